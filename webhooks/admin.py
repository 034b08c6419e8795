from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin_mixins import AuditedAdminMixin
from core.errors import ApplicationError
from webhooks import services, transport
from webhooks.models import Delivery, DeliveryAttempt, Endpoint


def _staff(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


class EndpointForm(forms.ModelForm):
    """Staff get the API's checks: the SSRF guard and known event names."""

    url = forms.URLField(max_length=2000, assume_scheme="https")

    class Meta:
        model = Endpoint
        fields = ("tenant", "url", "description", "event_types", "is_enabled")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            transport.url_check(url)
        except transport.UnsafeTarget as exc:
            raise forms.ValidationError(str(exc)) from None
        return url

    def clean(self) -> dict:
        cleaned: dict = super().clean() or {}
        tenant = cleaned.get("tenant")
        if self.instance._state.adding and tenant is not None:  # the pk (a uuid) is set before saving
            try:
                services.endpoint_limit_check(tenant=tenant)
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from None
        return cleaned

    def clean_event_types(self) -> list[str]:
        event_types = self.cleaned_data["event_types"] or []
        if not isinstance(event_types, list) or set(event_types) - set(services.EVENT_TYPES):
            raise forms.ValidationError(f"A list of event types among: {', '.join(services.EVENT_TYPES)}.")
        return event_types


@admin.register(Endpoint)
class EndpointAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = EndpointForm
    list_display = ("url", "tenant", "is_enabled", "disabled_reason", "consecutive_failures", "created_at")
    list_filter = ("is_enabled", "tenant")
    search_fields = ("url", "tenant__slug", "description")
    fields = (
        "tenant",
        "url",
        "description",
        "event_types",
        "is_enabled",
        "disabled_reason",
        "disabled_at",
        "consecutive_failures",
        "previous_secret_expires_at",
        "created_at",
    )
    readonly_fields = ("disabled_reason", "disabled_at", "consecutive_failures", "previous_secret_expires_at", "created_at")
    actions = ["enable_selected", "rotate_secret"]

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "tenant") if obj else self.readonly_fields

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # Tell staff about endpoints the system switched off.
        disabled = Endpoint.objects.filter(is_enabled=False).exclude(disabled_reason="").count()
        if disabled:
            messages.warning(request, f"{disabled} webhook endpoint(s) were disabled after failing deliveries; see 'Disabled reason'.")
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: Endpoint, form, change: bool) -> None:
        # Through the services, for the audit trail.
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name != "tenant"}
            services.endpoint_update(endpoint=obj, actor=_staff(request), **changes)
            return
        created = services.endpoint_create(
            tenant=obj.tenant, url=obj.url, event_types=obj.event_types or [], description=obj.description, actor=_staff(request)
        )
        obj.pk = created.pk
        messages.warning(request, f"The signing secret is: {created.secret}")

    @admin.action(description="Enable selected endpoints (resets the failure count)")
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            services.endpoint_update(endpoint=endpoint, is_enabled=True, actor=_staff(request))
        self.message_user(request, f"Enabled {queryset.count()} endpoint(s).")

    @admin.action(description="Rotate signing secret (the old one stays valid for the grace period)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            services.endpoint_secret_rotate(endpoint=endpoint, actor=_staff(request))
            messages.warning(request, f"New secret for {endpoint.url}: {endpoint.secret}")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "started_at", "status_code", "latency_ms", "error", "response_excerpt")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "event_type", "url", "tenant", "status", "attempts", "last_status_code", "next_attempt_at", "created_at")
    list_filter = ("status", "event_type", "tenant")
    search_fields = ("id", "url", "job__id")
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Delivery._meta.fields]
    inlines = [DeliveryAttemptInline]
    actions = ["replay_selected"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Replay selected deliveries")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        replayed = 0
        for delivery in queryset.select_related("endpoint", "tenant"):
            try:
                services.delivery_replay(delivery=delivery, actor=_staff(request))
                replayed += 1
            except ApplicationError as exc:
                messages.error(request, f"{delivery.id}: {exc.message}")
        self.message_user(request, f"Replaying {replayed} deliveries.")
