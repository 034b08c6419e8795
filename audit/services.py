from __future__ import annotations

from typing import Any

from django.db import models

from audit.models import AuditEvent
from core.context import request_id_var


def audit_record(
    *,
    action: str,
    actor: str,
    tenant: Any = None,
    target: models.Model | None = None,
    ip: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. Called explicitly from services."""
    return AuditEvent.objects.create(
        tenant=tenant,
        actor=actor,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        ip=ip,
        request_id=request_id_var.get() or "",
        metadata=metadata or {},
    )
