from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare

from core.responses import error_response

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and serving."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, Redis and storage answer. 503 names what failed."""
    failing: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "not ready"
        failing["database"] = type(exc).__name__
    try:
        from core.redis import redis_client

        redis_client().ping()
    except Exception as exc:
        failing["redis"] = type(exc).__name__
    try:
        from core.storage import storage_check

        storage_check()
    except Exception as exc:  # outage, credentials, missing bucket
        failing["storage"] = type(exc).__name__
    if failing:
        return error_response(503, "service_unavailable", "A dependency is unavailable.", {"failing": failing})
    return JsonResponse({"status": "ready"})


# What the edge's own answers mean, in the API's words. Only Traefik makes
# these statuses: the app itself never answers 502 or 504 (and its own 503s,
# e.g. a database outage, keep their JSON body: 503 is not intercepted).
_EDGE_ERRORS = {
    429: ("rate_limited", "Too many requests from this address; retry after the Retry-After delay.", {"limit": "edge"}),
    502: ("bad_gateway", "The proxy could not get an answer from the API; retry (with the same Idempotency-Key for a submit).", {}),
    504: ("gateway_timeout", "The API did not answer the proxy in time; retry (with the same Idempotency-Key for a submit).", {}),
}


def edge_error(request: HttpRequest, status: int) -> JsonResponse:
    """The body Traefik's ``errors`` middleware puts on the proxy's own 429,
    502 and 504 (platform/traefik/dynamic/middlewares.yml), so a client
    sees the API's error shape there too. The page replaces the proxy's
    headers, Retry-After included: one second always suffices for the
    limit, which is per second, and is a sane first backoff for the rest."""
    if status not in _EDGE_ERRORS:
        return not_found(request)
    code, message, details = _EDGE_ERRORS[status]
    response = error_response(status, code, message, details)
    response["Retry-After"] = "1"
    return response


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: this host's processes plus queue and job state."""
    from core.metrics import exposition

    token = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not constant_time_compare(supplied, token):
            return error_response(401, "invalid_metrics_token", "/metrics needs the METRICS_TOKEN as a Bearer token.")
    body, content_type = exposition()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(404, "not_found", "No such endpoint.")


def server_error(request: HttpRequest) -> JsonResponse:
    return error_response(500, "internal_error", "An internal error occurred; it has been logged.")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(400, "bad_request", "The request could not be understood.")
