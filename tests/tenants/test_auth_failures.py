"""Failed API authentications are limited per client address (a real Redis);
across web processes: tests/core/test_http_server.py."""

from __future__ import annotations

import itertools

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent

pytestmark = pytest.mark.usefixtures("redis_url")

# Each test its own addresses (TEST-NET-2): buckets live in the session's Redis.
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture
def limit(settings) -> int:
    settings.AUTH_FAILURE_LIMIT = 4
    settings.AUTH_FAILURE_WINDOW_S = 3600  # one failure refunded every 15 min: none during a test
    return 4


def _get(client: APIClient, address: str, key: str | None) -> object:
    extra = {"REMOTE_ADDR": address}
    if key is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client.get("/v1/usage", **extra)


@pytest.mark.django_db
def test_an_address_gets_the_limit_of_401s_then_429_with_retry_after(limit, api):
    address, client = next(_addresses), APIClient()
    statuses = [_get(client, address, f"guess{n}.secret").status_code for n in range(limit + 3)]
    assert statuses == [401] * limit + [429] * 3
    refused = _get(client, address, "guess.again")
    body = refused.json()["error"]
    assert body["code"] == "rate_limited"
    assert body["details"] == {"limit": "authentication_failures", "failures": limit, "window_s": 3600}
    assert 1 <= int(refused["Retry-After"]) <= 3600 // limit
    # Malformed headers and keys count as failures too.
    other = next(_addresses)
    statuses = [
        client.get("/v1/usage", REMOTE_ADDR=other, HTTP_AUTHORIZATION=value).status_code
        for value in ["Basic x", "Bearer nodot", "Bearer a b"] * 2
    ]
    assert statuses == [401] * limit + [429] * 2


@pytest.mark.django_db
def test_a_blocked_address_is_refused_even_with_a_good_key_and_others_are_not(limit, api):
    attacker, neighbour = next(_addresses), next(_addresses)
    client = APIClient()
    for n in range(limit):
        assert _get(client, attacker, f"guess{n}.secret").status_code == 401
    # A guesser cannot tell a good key from a bad one any more.
    assert _get(client, attacker, api.raw_key).status_code == 429
    # Successes elsewhere are not held back by the attacker's failures.
    assert _get(client, neighbour, api.raw_key).status_code == 200
    # Requests without a key (401 missing_api_key) are not failures.
    for _ in range(limit + 2):
        assert _get(client, neighbour, None).status_code == 401
    assert _get(client, neighbour, api.raw_key).status_code == 200


@pytest.mark.django_db
def test_successful_requests_cost_nothing(limit, api):
    address, client = next(_addresses), APIClient()
    for _ in range(3 * limit):
        assert _get(client, address, api.raw_key).status_code == 200
    statuses = [_get(client, address, f"guess{n}.secret").status_code for n in range(limit + 1)]
    assert statuses == [401] * limit + [429]


@pytest.mark.django_db
def test_the_block_is_audited_once(limit):
    address, client = next(_addresses), APIClient()
    for n in range(limit + 5):
        _get(client, address, f"guess{n}.secret")
    blocked = AuditEvent.objects.filter(action="auth.address_blocked", ip=address)
    assert blocked.count() == 1
    assert blocked.get().metadata == {"failures": limit, "window_s": 3600}


@pytest.mark.django_db
def test_zero_disables_the_limit(settings):
    settings.AUTH_FAILURE_LIMIT = 0
    address, client = next(_addresses), APIClient()
    assert {_get(client, address, f"guess{n}.secret").status_code for n in range(30)} == {401}


@pytest.mark.django_db
def test_redis_down_fails_open(limit, settings, api):
    from core.redis_server import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    address, client = next(_addresses), APIClient()
    assert {_get(client, address, f"guess{n}.secret").status_code for n in range(limit + 2)} == {401}


@pytest.mark.django_db
def test_with_the_key_cached_the_block_is_checked_in_the_rate_limits_round_trip(limit, api, settings, monkeypatch):
    """A cached key skips the lookup, and the address's failures are checked
    by the rate limit's script: one Redis round trip per request, and a
    blocked address is still refused with a good key."""
    from tenants import authentication, throttling
    from tenants.auth_cache import api_key_cache
    from tenants.ratelimit import rate_limit_check

    settings.AUTH_CACHE_TTL_S = 60
    api_key_cache.clear()
    calls: list[dict] = []

    def counted(**kwargs):
        calls.append(kwargs)
        return rate_limit_check(**kwargs)

    monkeypatch.setattr(authentication, "rate_limit_check", counted)
    monkeypatch.setattr(throttling, "rate_limit_check", counted)
    attacker, client = next(_addresses), APIClient()
    try:
        assert _get(client, next(_addresses), api.raw_key).status_code == 200  # verified, now cached
        calls.clear()
        assert _get(client, attacker, api.raw_key).status_code == 200
        assert len(calls) == 1 and calls[0]["gate"].name == f"auth-failures:{attacker}"
        for n in range(limit):
            assert _get(client, attacker, f"guess{n}.secret").status_code == 401
        calls.clear()
        refused = _get(client, attacker, api.raw_key)
        assert refused.status_code == 429
        assert refused.json()["error"]["details"]["limit"] == "authentication_failures"
        assert 1 <= int(refused["Retry-After"]) <= 3600 // limit
        assert "RateLimit-Remaining" not in refused  # the tenant's buckets were not charged
        assert len(calls) == 1
        assert _get(client, next(_addresses), api.raw_key).status_code == 200  # other addresses are not held back
    finally:
        api_key_cache.clear()
