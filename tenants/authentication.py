"""``Authorization: Bearer <key>`` authentication against hashed API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from audit.services import audit_record, auth_failure_record
from core.context import client_ip
from core.errors import ApplicationError
from core.redis import redis_client
from tenants.auth_cache import api_key_cache
from tenants.models import ApiKey, Tenant
from tenants.ratelimit import Gate, rate_limit_check


@dataclass(frozen=True)
class ApiClient:
    """The authenticated principal of an API request (``request.user``)."""

    tenant: Tenant
    api_key: ApiKey
    is_authenticated: bool = True

    @property
    def actor(self) -> str:
        return f"api_key:{self.api_key.prefix}"


class ApiRequest(Request):
    """The type of ``request`` in the /v1 views: DRF's ``Request`` once
    ``ApiKeyAuthentication`` and ``IsAuthenticated`` (the REST_FRAMEWORK
    defaults) have passed, so ``user`` is the ``ApiClient`` and ``auth`` its
    ``ApiKey``. For the type checker only: DRF builds plain ``Request``
    objects, so never instantiate it or test ``isinstance`` against it. A view
    that allows anonymous requests must take a plain ``Request``."""

    user: ApiClient  # type: ignore[assignment]  # DRF types it as a Django user
    auth: ApiKey


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts:
            return None  # -> 401 missing_api_key from IsAuthenticated
        ip = client_ip(request)
        try:
            return self._authenticate(parts, request, ip)
        except exceptions.AuthenticationFailed:
            auth_failure_charge(ip)
            raise

    def _authenticate(self, parts: list[bytes], request: Request, ip: str | None) -> tuple[ApiClient, ApiKey]:
        raw_key = self._raw_key(parts)
        digest = api_key_cache.digest(raw_key) if raw_key is not None else None
        # A key verified by this process within AUTH_CACHE_TTL_S skips the
        # lookup (tenants/auth_cache.py: the bound on revocation).
        api_key = api_key_cache.get(digest) if digest is not None else None
        if api_key is not None and not api_key.has_expired:
            # The address's failures are then checked by the rate limit's
            # script, in its round trip (tenants.throttling), not in one of their own.
            request._request.auth_failures_gate = ip  # type: ignore[attr-defined]
        else:
            auth_failures_check(ip)  # before any lookup: a blocked address learns nothing
            if raw_key is None or digest is None:
                raise self._malformed(parts, request)
            if api_key is not None:  # cached, and expired since
                auth_failure_record(request=request, prefix=api_key.prefix, reason="invalid_api_key", tenant=api_key.tenant)
                raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
            ticket = api_key_cache.ticket()
            api_key = self._lookup(raw_key, request)
            api_key_cache.put(digest, api_key, ticket=ticket)
        if self._touch(api_key) and digest is not None:
            api_key_cache.touched(digest, api_key)
        return ApiClient(tenant=api_key.tenant, api_key=api_key), api_key

    def _is_bearer(self, parts: list[bytes]) -> bool:
        return parts[0].lower() == self.keyword and len(parts) == 2

    def _raw_key(self, parts: list[bytes]) -> str | None:
        """The key of ``Bearer <key>``; None when the header is malformed."""
        if not self._is_bearer(parts):
            return None
        try:
            return parts[1].decode("ascii")
        except UnicodeDecodeError:
            return None

    def _malformed(self, parts: list[bytes], request: Request) -> exceptions.AuthenticationFailed:
        if not self._is_bearer(parts):
            auth_failure_record(request=request, prefix="", reason="malformed_authorization")
            return exceptions.AuthenticationFailed("Use the header 'Authorization: Bearer <api key>'.")
        auth_failure_record(request=request, prefix="", reason="malformed_api_key")
        return exceptions.AuthenticationFailed("Invalid API key.")

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'  # makes DRF answer 401, not 403

    @staticmethod
    def _lookup(raw_key: str, request: Request) -> ApiKey:
        prefix, _, secret = raw_key.partition(".")
        if not prefix or not secret or len(raw_key) > 200:
            auth_failure_record(request=request, prefix="", reason="malformed_api_key")
            raise exceptions.AuthenticationFailed("Invalid API key.")
        # One indexed lookup by prefix among unrevoked keys, then a
        # constant-time SHA-512 comparison. The model's is_valid() checks only
        # the hash, so expiry is checked here too.
        api_key = ApiKey.objects.get_usable_keys().select_related("tenant").filter(prefix=prefix).first()
        if api_key is None or api_key.has_expired or not api_key.is_valid(raw_key):
            auth_failure_record(request=request, prefix=prefix, reason="invalid_api_key", tenant=api_key.tenant if api_key else None)
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        if not api_key.tenant.is_active:
            auth_failure_record(request=request, prefix=prefix, reason="tenant_suspended", tenant=api_key.tenant)
            raise ApplicationError("tenant_suspended", "This tenant is suspended; contact support.", status=403)
        return api_key

    @staticmethod
    def _touch(api_key: ApiKey) -> bool:
        """Record last use, at most once per resolution window: a write on
        every request would make key checks the bottleneck. True if written."""
        now = timezone.now()
        resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_S)
        if api_key.last_used_at is None or now - api_key.last_used_at >= resolution:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
            return True
        return False


# --- Failed authentications per client address (GCRA in Redis, as the
# tenant rate limits): AUTH_FAILURE_LIMIT failures, then one more per
# AUTH_FAILURE_WINDOW_S / AUTH_FAILURE_LIMIT. Past that, every request from
# the address that carries a key is refused with 429 before the key is even
# looked up, so a guesser cannot tell a good key from a bad one. Successful
# requests cost nothing from the bucket, and each address has its own.


def _failure_key(ip: str) -> str:
    return f"auth-failures:{ip}"


def _failure_bucket(ip: str) -> dict[str, int]:
    return {_failure_key(ip): settings.AUTH_FAILURE_LIMIT}


def auth_failures_gate(ip: str) -> Gate | None:
    """The address's failures as a gate of the rate limit's script
    (tenants.throttling): checked in its round trip, never charged there."""
    if settings.AUTH_FAILURE_LIMIT <= 0:
        return None
    return Gate(name=_failure_key(ip), limit=settings.AUTH_FAILURE_LIMIT, period_s=settings.AUTH_FAILURE_WINDOW_S)


def auth_failures_blocked(retry_after_s: int) -> ApplicationError:
    return ApplicationError(
        "rate_limited",
        "Too many failed authentications from this address; retry after the Retry-After delay.",
        status=429,
        details={"limit": "authentication_failures", "failures": settings.AUTH_FAILURE_LIMIT, "window_s": settings.AUTH_FAILURE_WINDOW_S},
        retry_after_s=retry_after_s,
    )


def auth_failures_check(ip: str | None) -> None:
    """Refuse (429) an address that used up its failures; costs nothing."""
    if ip is None or settings.AUTH_FAILURE_LIMIT <= 0:
        return
    decision = rate_limit_check(buckets=_failure_bucket(ip), period_s=settings.AUTH_FAILURE_WINDOW_S, charge=False)
    if decision is not None and not decision.allowed:
        raise auth_failures_blocked(decision.retry_after_s)


def auth_failure_charge(ip: str | None) -> None:
    """Count one failure; the one that finds the bucket empty (concurrent
    failures passed the check together) is answered 429 instead of 401, so
    an address gets at most the limit of 401s, whatever its concurrency.
    The failure that uses the last one blocks the address: audited, at most
    once per address and window."""
    if ip is None or settings.AUTH_FAILURE_LIMIT <= 0:
        return
    decision = rate_limit_check(buckets=_failure_bucket(ip), period_s=settings.AUTH_FAILURE_WINDOW_S)
    if decision is None:
        return
    if decision.remaining == 0:
        _block_audit(ip)
    if not decision.allowed:
        raise auth_failures_blocked(decision.retry_after_s)


def _block_audit(ip: str) -> None:
    try:
        first = redis_client().set(f"mynah:audit-auth-block:{ip}", 1, nx=True, ex=settings.AUTH_FAILURE_WINDOW_S)
    except redis.RedisError:
        first = True
    if first:
        audit_record(
            action="auth.address_blocked",
            actor="anonymous",
            ip=ip,
            metadata={"failures": settings.AUTH_FAILURE_LIMIT, "window_s": settings.AUTH_FAILURE_WINDOW_S},
        )
