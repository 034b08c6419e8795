from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from audit.admin_mixins import AuditedAdminMixin
from tenants.limits import tenant_limits
from tenants.models import ApiKey, Tenant, UsagePeriod
from tenants.selectors import usage_get
from tenants.services import api_key_create, api_key_revoke, auth_cache_invalidate


@admin.register(Tenant)
class TenantAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("slug", "name", "is_active", "active_jobs", "seconds_this_month", "created_at")
    search_fields = ("slug", "name")
    list_filter = ("is_active", "allow_high_priority")
    readonly_fields = ("id", "created_at", "usage", "effective_limits")
    fieldsets = (
        (None, {"fields": ("id", "slug", "name", "is_active", "created_at")}),
        (
            "Limits (empty: the deployment's default)",
            {
                "fields": (
                    "rate_limit_per_minute",
                    "key_rate_limit_per_minute",
                    "max_active_jobs",
                    "monthly_seconds_quota",
                    "max_in_flight",
                    "max_in_flight_cost",
                    "max_job_duration_s",
                    "max_webhook_endpoints",
                    "max_webhooks_in_flight",
                    "allow_high_priority",
                    "result_retention_days",
                    "effective_limits",
                )
            },
        ),
        ("Usage", {"fields": ("usage",)}),
    )

    def save_model(self, request: HttpRequest, obj: Tenant, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        auth_cache_invalidate()  # a suspension holds in this process at once

    @admin.display(description="active jobs")
    def active_jobs(self, tenant: Tenant) -> int:
        from jobs.models import Job  # display only: tenants itself never depends on jobs

        return tenant.jobs.filter(status__in=Job.ACTIVE).count()

    @admin.display(description="seconds this month")
    def seconds_this_month(self, tenant: Tenant) -> str:
        usage = usage_get(tenant=tenant)
        return f"{usage.audio_seconds + usage.video_seconds:.1f}"

    @admin.display(description="in effect")
    def effective_limits(self, tenant: Tenant) -> str:
        if tenant.pk is None:
            return "-"
        rows = tenant_limits(tenant).as_dict().items()
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description="usage by month")
    def usage(self, tenant: Tenant) -> str:
        if tenant.pk is None:
            return "-"
        periods = UsagePeriod.objects.filter(tenant=tenant).order_by("-period")[:12]
        rows = ((p.period, f"{p.audio_seconds:.1f}", f"{p.video_seconds:.1f}", p.jobs_succeeded, p.cache_hits) for p in periods)
        header = "<tr><th>month</th><th>audio s</th><th>video s</th><th>jobs</th><th>cache hits</th></tr>"
        return format_html("<table>{}{}</table>", mark_safe(header), format_html_join("", "<tr>" + "<td>{}</td>" * 5 + "</tr>", rows))


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("prefix", "name", "tenant", "revoked", "expiry_date", "created", "last_used_at")
    list_filter = ("revoked", "tenant")
    search_fields = ("prefix", "name", "tenant__slug")
    fields = ("tenant", "name", "expiry_date", "prefix", "revoked", "created", "last_used_at")
    readonly_fields = ("prefix", "revoked", "created", "last_used_at")
    actions = ["revoke_selected"]

    def get_readonly_fields(self, request, obj=None):
        # A key's tenant never changes after creation.
        return (*self.readonly_fields, "tenant") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            auth_cache_invalidate()  # a new expiry holds in this process at once
            return
        api_key, raw_key = api_key_create(
            tenant=obj.tenant, name=obj.name, expires_at=obj.expiry_date, actor=f"staff:{request.user.get_username()}"
        )
        obj.pk = api_key.pk
        messages.warning(request, f"The API key is: {raw_key} — store it now, it will not be shown again.")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: keys stay for the audit trail

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset.select_related("tenant"):
            api_key_revoke(api_key=api_key, actor=f"staff:{request.user.get_username()}")
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
