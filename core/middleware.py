from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.context import request_id_var
from core.responses import error_response

# Accept a caller's (or Traefik's) request id only if it is short and plain, so
# nothing odd ends up in logs or headers.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Gives every request an id, exposes it as ``X-Request-ID`` and to logs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class BodySizeLimitMiddleware:
    """Rejects API bodies whose declared size exceeds the limit before reading
    them (413). Bodies without a Content-Length are capped by the parser."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/v1/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "invalid_content_length", "Content-Length is not a number.")
            upload_limit = settings.UPLOAD_BODY_LIMITS.get(request.path)
            if upload_limit is not None and length > upload_limit:
                # Far over the file limit: refused before a byte is read.
                return error_response(
                    413, "file_too_large", f"The upload exceeds {upload_limit} bytes.", {"limit_bytes": upload_limit}
                )
            limit = settings.MAX_JSON_BODY_BYTES
            if upload_limit is None and length > limit:
                return error_response(
                    413, "payload_too_large", f"Request body exceeds {limit} bytes.", {"limit_bytes": limit}
                )
        return self.get_response(request)


class RateLimitHeadersMiddleware:
    """Adds ``RateLimit-*`` headers computed by the throttle (on 429s too)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        for name, value in getattr(request, "ratelimit_headers", {}).items():
            response[name] = value
        return response
