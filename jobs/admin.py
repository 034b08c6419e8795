from django.contrib import admin

from audit.admin_mixins import AuditedAdminMixin
from jobs.models import Job


@admin.register(Job)
class JobAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "tenant", "kind", "engine", "status", "progress", "stage", "attempts", "created_at", "finished_at")
    list_filter = ("status", "kind", "engine", "priority", "tenant")
    search_fields = ("id", "error_code")
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Job._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # jobs are submitted through the API


# django_dramatiq's Task admin stays empty (its AdminMiddleware is not used:
# Job rows are the record of work), so hide it rather than mislead staff.
try:
    from django_dramatiq.models import Task

    admin.site.unregister(Task)
except (ImportError, admin.sites.NotRegistered):
    pass
