from __future__ import annotations

from typing import Any

from django.db import models

from audit.models import AuditEvent
from core.context import client_ip, request_id_var
from core.redis import redis_client
from core.rows import row_insert


def audit_record(
    *,
    action: str,
    actor: str,
    tenant: Any = None,
    target: models.Model | None = None,
    ip: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. Called explicitly from services. A target
    names itself by ``audit_id`` when its primary key should not be copied
    around (an API key's pk embeds its hash)."""
    event = audit_event(action=action, actor=actor, tenant=tenant, target=target, ip=ip, metadata=metadata)
    row_insert(event)  # append-only: AuditEvent.save() only refuses updates
    return event


def audit_event(
    *,
    action: str,
    actor: str,
    tenant: Any = None,
    target: models.Model | None = None,
    ip: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """The event that :func:`audit_record` appends, not yet stored: for a
    caller that inserts it itself (core.rows), in the transaction of what it
    records. The request id is this thread's, read now."""
    return AuditEvent(
        tenant=tenant,
        actor=actor,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(getattr(target, "audit_id", target.pk)) if target is not None else "",
        ip=ip,
        request_id=request_id_var.get() or "",
        metadata=metadata or {},
    )


def auth_failure_record(*, request: Any, prefix: str, reason: str, tenant: Any = None) -> None:
    """Audit a failed authentication without letting a flood of them flood
    the log: at most one event per client address per
    ``AUDIT_AUTH_FAILURE_INTERVAL_S`` (Redis decides, across processes; keyed
    by address only, since the caller chooses the key it sends). Only the
    key's public prefix is kept, never the secret."""
    import redis
    from django.conf import settings

    ip = client_ip(request)
    try:
        first = redis_client().set(f"mynah:audit-auth:{ip}", 1, nx=True, ex=settings.AUDIT_AUTH_FAILURE_INTERVAL_S)
    except redis.RedisError:
        first = True  # better an extra line than a missing one
    if first:
        audit_record(
            action="auth.failure",
            actor=f"api_key:{prefix[:32]}" if prefix else "anonymous",
            tenant=tenant,
            ip=ip,
            metadata={"reason": reason, "path": request.path[:200]},
        )
