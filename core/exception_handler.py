"""DRF's exception handler (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``): maps every
API error to ``{"error": {code, message, details, request_id}}``. The error
type itself, ``ApplicationError``, lives in ``core.errors``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import ApplicationError
from core.middleware import DATABASE_UNAVAILABLE, is_database_outage
from core.responses import error_body

logger = logging.getLogger(__name__)

# Stable codes for DRF's exception classes.
_DRF_CODES: dict[type[drf.APIException], str] = {
    drf.ParseError: "malformed_request",
    drf.AuthenticationFailed: "invalid_api_key",
    drf.NotAuthenticated: "missing_api_key",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "rate_limited",
}


def _flatten_validation(detail: Any) -> Any:
    """DRF ErrorDetail trees -> plain lists of {message, code}."""
    if isinstance(detail, dict):
        return {key: _flatten_validation(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten_validation(item) for item in detail]
    return {"message": str(detail), "code": getattr(detail, "code", "invalid")}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        status, code, message, details = exc.status_code, exc.code, exc.message, exc.details
        if exc.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, exc.retry_after_s))
    elif isinstance(exc, Http404):
        status, code, message, details = 404, "not_found", "Not found.", {}
    elif isinstance(exc, PermissionDenied):
        status, code, message, details = 403, "permission_denied", "Permission denied.", {}
    elif isinstance(exc, RequestDataTooBig):
        status, code, message, details = 413, "payload_too_large", "Request body is too large.", {}
    elif isinstance(exc, DjangoValidationError):  # a value that slipped past a serializer
        status, code, message, details = 400, "validation_error", "The request is invalid.", {"errors": exc.messages}
    elif isinstance(exc, drf.ValidationError):
        status, code, message = 400, "validation_error", "The request is invalid."
        details = {"fields": _flatten_validation(exc.detail)}
    elif isinstance(exc, drf.APIException):
        status = exc.status_code
        code = _DRF_CODES.get(type(exc)) or str(exc.default_code)
        message, details = str(exc.detail), {}
        if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
            status = 401
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        wait = getattr(exc, "wait", None)  # set by Throttled.__init__; missing from the DRF stubs
        if isinstance(exc, drf.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait))
    elif is_database_outage(exc):
        logger.warning("database unavailable", exc_info=exc)
        status, code, message, details = 503, "service_unavailable", DATABASE_UNAVAILABLE, {"failing": "database"}
        headers["Retry-After"] = "5"
    else:
        return None  # a real bug: let Django log it and render the JSON 500
    set_rollback()
    return Response(error_body(code, message, details), status=status, headers=headers)
