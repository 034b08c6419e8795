"""DRF throttle backed by the Redis limiter: per API key and per tenant."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tenants.authentication import ApiClient, auth_failures_blocked, auth_failures_gate
from tenants.limits import tenant_limits
from tenants.ratelimit import rate_limit_check


class TenantRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):  # None (UNAUTHENTICATED_USER) or not authenticated
            return True  # authentication answers first (401)
        limits = tenant_limits(client.tenant)
        # Set by ApiKeyAuthentication when a cached key skipped the check of
        # the address's authentication failures: done here, in this round trip.
        gate_ip = getattr(request._request, "auth_failures_gate", None)
        decision = rate_limit_check(
            buckets={
                f"key:{client.api_key.pk}": limits.key_rate_limit_per_minute,
                f"tenant:{client.tenant.pk}": limits.rate_limit_per_minute,
            },
            gate=auth_failures_gate(gate_ip) if gate_ip else None,
        )
        if decision is not None and decision.gate_closed:
            raise auth_failures_blocked(decision.retry_after_s)
        self.decision = decision
        if decision is not None:
            # Picked up by core.middleware.RateLimitHeadersMiddleware, also for 429s.
            request._request.ratelimit_headers = decision.headers()  # type: ignore[attr-defined]
        return decision is None or decision.allowed

    def wait(self) -> float | None:
        decision = getattr(self, "decision", None)
        return decision.retry_after_s if decision else None
