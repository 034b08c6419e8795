from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from core.context import request_id_var


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}, "request_id": request_id_var.get()}}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def iso(value: Any) -> str | None:
    """A datetime as ISO 8601 with ``Z`` (what every API body uses)."""
    return value.isoformat().replace("+00:00", "Z") if value else None
