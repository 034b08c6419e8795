"""Brute-force protection of the admin login, the only password login
(django-axes, configured in config/settings.py): the answer to a locked-out
attempt, and the audit event of each lockout."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit.services import audit_record


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: 429 with Retry-After, in the admin's look.
    Every attempt while locked out restarts the cool-off, so the wait is
    always the whole of it from now."""
    cooloff_s = settings.ADMIN_LOGIN_COOLOFF_S
    context = {"title": "Too many failed sign-ins", "cooloff_minutes": max(1, -(-cooloff_s // 60))}
    response = render(request, "admin/mynah/login_locked.html", context, status=429)
    response["Retry-After"] = str(cooloff_s)
    response["Cache-Control"] = "no-store"
    return response


@receiver(user_locked_out, dispatch_uid="tenants.admin_login.audit")
def admin_lockout_audit(sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any) -> None:
    """One audit event per lockout: axes sends this signal for the failure
    that reaches the limit and again for every attempt while locked out;
    only the first is recorded."""
    if getattr(request, "axes_failures_since_start", None) != settings.AXES_FAILURE_LIMIT:
        return
    audit_record(
        action="admin.login_locked_out",
        actor="anonymous",
        ip=ip_address,
        metadata={
            "username": (username or "")[:150],
            "failures": settings.AXES_FAILURE_LIMIT,
            "cooloff_s": settings.ADMIN_LOGIN_COOLOFF_S,
            "path": request.path[:200],
        },
    )
