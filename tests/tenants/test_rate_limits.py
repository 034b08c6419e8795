"""Rate limits: a real Redis, per key and per tenant, and exact across
several web processes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rest_framework.test import APIClient

from harness.stack import Stack
from tenants.models import Tenant
from tenants.services import api_key_create

# The limiter keeps its buckets in Redis.
pytestmark = pytest.mark.usefixtures("redis_url")


def _client(tenant) -> APIClient:
    _, raw = api_key_create(tenant=tenant, name="rl")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_responses_carry_ratelimit_headers(api, tenant, settings):
    Tenant.objects.filter(pk=tenant.pk).update(rate_limit_per_minute=50, key_rate_limit_per_minute=40)
    first = api.get("/v1/jobs")
    second = api.get("/v1/jobs")
    assert first.status_code == 200
    assert first["RateLimit-Limit"] == "40"  # the tighter of key and tenant
    assert (int(first["RateLimit-Remaining"]), int(second["RateLimit-Remaining"])) == (39, 38)
    assert 1 <= int(second["RateLimit-Reset"]) <= 60


def test_over_the_key_limit_is_429_with_retry_after(tenant):
    Tenant.objects.filter(pk=tenant.pk).update(key_rate_limit_per_minute=3)
    client = _client(tenant)
    statuses = [client.get("/v1/jobs").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/v1/jobs")
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 20  # one token every 20 s
    assert refused["RateLimit-Remaining"] == "0"
    # Another key of the same tenant has its own key bucket.
    assert _client(tenant).get("/v1/jobs").status_code == 200


def test_the_tenant_limit_is_shared_by_its_keys_and_not_by_other_tenants(tenant, other_tenant):
    Tenant.objects.filter(pk=tenant.pk).update(rate_limit_per_minute=4)
    one, two = _client(tenant), _client(tenant)
    statuses = [client.get("/v1/jobs").status_code for client in (one, two, one, two, one)]
    assert statuses == [200, 200, 200, 200, 429]
    assert _client(other_tenant).get("/v1/jobs").status_code == 200


def test_refused_requests_are_not_charged(tenant):
    Tenant.objects.filter(pk=tenant.pk).update(key_rate_limit_per_minute=60)  # one per second
    client = _client(tenant)
    # Use up the burst and be refused a few times. Refusals are counted, not
    # requests: on a busy machine 60 requests take seconds, and refill.
    refused = 0
    for _ in range(300):
        refused += client.get("/v1/jobs").status_code == 429
        if refused == 5:
            break
    assert refused == 5
    time.sleep(1.1)
    assert client.get("/v1/jobs").status_code == 200  # refusals did not push the refill back


def test_the_api_fails_open_when_redis_is_down(api, settings):
    from core.redis_server import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = api.get("/v1/jobs")
    assert response.status_code == 200 and "RateLimit-Limit" not in response


@pytest.mark.integration
def test_limit_holds_within_one_percent_across_four_web_processes(tmp_path):
    limit = 300
    stack = Stack(
        tmp_path,
        web_workers=4,
        worker_threads=1,
        extra_env={"TENANT_RATE_LIMIT_PER_MINUTE": str(limit), "TENANT_KEY_RATE_LIMIT_PER_MINUTE": "100000", "LOG_LEVEL": "WARNING"},
    ).start()
    try:
        statuses: list[int] = []
        lock = threading.Lock()
        sessions = threading.local()

        def hit(_: int) -> None:
            if not hasattr(sessions, "session"):
                sessions.session = requests.Session()
                sessions.session.headers.update(stack.headers())
            code = sessions.session.get(f"{stack.base_url}/v1/jobs?limit=1", timeout=30).status_code
            with lock:
                statuses.append(code)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=200) as pool:
            list(pool.map(hit, range(1500)))
        elapsed = time.monotonic() - started
    finally:
        stack.stop()
    accepted = statuses.count(200)
    allowed = limit + elapsed * limit / 60  # the burst, plus the refill during the run
    assert set(statuses) <= {200, 429}
    assert accepted >= limit  # the whole burst was usable
    assert accepted <= allowed * 1.01, (accepted, allowed, elapsed)
