"""One error type for the whole API: a stable machine-readable ``code``.

Raise these; ``core.exception_handler`` turns them into responses."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    status_code = 400

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after_s = retry_after_s  # sent as Retry-After: when trying again can succeed
        if status is not None:
            self.status_code = status


class NotFound(ApplicationError):
    def __init__(self, message: str = "Not found.") -> None:
        super().__init__("not_found", message, status=404)
