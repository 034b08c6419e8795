"""Per-request / per-job context carried into every log line."""

from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)


def client_ip(request: Any) -> str | None:
    """The calling client's address, for audit events (a Django or DRF request)."""
    return request.META.get("REMOTE_ADDR") or None
