"""Staff actions in the Django admin land in the audit log too."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.http import HttpRequest

from audit.services import audit_record
from core.context import client_ip


class AuditedAdminMixin:
    """Mirrors the admin's own change log (add, change, delete) into AuditEvent.
    Custom actions call services, which audit themselves."""

    def _audit(self, request: HttpRequest, action: str, obj: Model, detail: Any = None) -> None:
        tenant = getattr(obj, "tenant", None) if obj._meta.label_lower != "tenants.tenant" else obj
        audit_record(
            action=f"admin.{action}",
            actor=f"staff:{request.user.get_username()}",
            tenant=tenant,
            target=obj,
            ip=client_ip(request),
            metadata={"model": obj._meta.label_lower, "change": str(detail or "")[:500]},
        )

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, "add", obj, message)
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, "change", obj, message)
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: QuerySet) -> Any:
        for obj in queryset:
            self._audit(request, "delete", obj)
        return super().log_deletions(request, queryset)  # type: ignore[misc]
