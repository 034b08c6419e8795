from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin_mixins import AuditedAdminMixin
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, api_key_revoke


@admin.register(Tenant)
class TenantAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("slug", "name", "is_active", "created_at")
    search_fields = ("slug", "name")
    list_filter = ("is_active",)
    readonly_fields = ("id", "created_at")


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
