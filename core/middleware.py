from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from django import db
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core import metrics
from core.context import request_id_var
from core.responses import error_response

logger = logging.getLogger(__name__)

# Accept a caller's (or Traefik's) request id only if it is short and plain, so
# nothing odd ends up in logs or headers.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Gives every request an id, exposes it as ``X-Request-ID`` and to logs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")  # not request.headers: that parses every header
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


def request_body_limit(path: str) -> tuple[int, str, str]:
    """The most bytes a request body to ``path`` may have, with the error
    code and message past it. The ASGI router (config/asgi.py) applies it
    while the body arrives, chunked or not; BodySizeLimitMiddleware to the
    declared Content-Length (the WSGI path, tests)."""
    if path.startswith("/v1/"):
        upload_limit = settings.UPLOAD_BODY_LIMITS.get(path)
        if upload_limit is not None:
            # Far over the file limit: refused before the file is read.
            return upload_limit, "file_too_large", f"The upload exceeds {upload_limit} bytes."
        limit = settings.MAX_JSON_BODY_BYTES
    else:
        limit = settings.MAX_REQUEST_BODY_BYTES
    return limit, "payload_too_large", f"Request body exceeds {limit} bytes."


class BodySizeLimitMiddleware:
    """Rejects API bodies whose declared size exceeds the limit before reading
    them (413). Under the ASGI server, bodies without a Content-Length
    (chunked) are counted while they arrive, and given one once read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/v1/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "invalid_content_length", "Content-Length is not a number.")
            limit, code, message = request_body_limit(request.path)
            if length > limit:
                return error_response(413, code, message, {"limit_bytes": limit})
        return self.get_response(request)


# The pages this server renders (admin, operations dashboard, API docs) load
# only their own scripts and styles: Django's admin has no inline script or
# style, the dashboard's Chart.js is vendored, Swagger UI comes from the
# sidecar wheel with its init script served as a file (SpectacularSwaggerSplitView).
# data: images are Swagger UI's icons. Media may come from object storage's
# presigned URLs (the admin's players, like the playground's).
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self' data:; "
    "media-src 'self'{media}; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def page_content_security_policy() -> str:
    from core.storage import storage_is_local

    return _PAGE_CSP.format(media="" if storage_is_local() else " https: http:")


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on every HTML page that has none of its own
    (the playground sets a stricter one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = page_content_security_policy()
        return response


class RateLimitHeadersMiddleware:
    """Adds ``RateLimit-*`` headers computed by the throttle (on 429s too)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        for name, value in getattr(request, "ratelimit_headers", {}).items():
            response[name] = value
        return response


class MetricsMiddleware:
    """Counts and times every request by route pattern, method and status."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        elapsed = metrics.timer()
        response = self.get_response(request)
        route, method = metrics.request_route(request), request.method or ""
        metrics.observe(metrics.http_request_seconds, elapsed(), route=route, method=method)
        metrics.increment(metrics.http_requests, route=route, method=method, status=str(response.status_code))
        return response


class DatabaseUnavailableMiddleware:
    """A database that is down or restarting answers 503 service_unavailable
    (with Retry-After) on every route, never a 500: clients retry, and the
    next request reconnects (CONN_HEALTH_CHECKS) once it is back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_outage(exception):
            return None
        return database_unavailable_response()


def is_database_outage(exception: BaseException) -> bool:
    """Connection-level failures only: a constraint violation is a bug, not an outage."""
    return isinstance(exception, (db.OperationalError, db.InterfaceError))


DATABASE_UNAVAILABLE = "The database is unavailable. Retry shortly."


def database_unavailable_response() -> HttpResponse:
    logger.warning("database unavailable", exc_info=True)  # noqa: LOG014 (called from exception handlers)
    response = error_response(503, "service_unavailable", DATABASE_UNAVAILABLE, {"failing": "database"})
    response["Retry-After"] = "5"
    return response


class OperationalEndpointsMiddleware:
    """``/healthz``, ``/readyz`` and ``/metrics`` answer whatever Host the
    caller sends. Kubelet probes and Prometheus address a pod by its IP,
    which ALLOWED_HOSTS rightly refuses for everything else; these answers
    build no URLs from the host, so the check protects nothing here. Sits
    before SecurityMiddleware and CommonMiddleware, the first to validate the
    host."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from core import views

        self.get_response = get_response
        self.views = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.views.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            from django.urls import resolve

            request.resolver_match = resolve(request.path_info)  # the route label in request metrics
            return view(request)
        return self.get_response(request)
