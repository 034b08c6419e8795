"""The per-process API-key cache (tenants/auth_cache.py): a hit skips the key
lookup; revocation and suspension hold at once in the process that makes
them and within AUTH_CACHE_TTL_S everywhere else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.auth_cache import ApiKeyCache, api_key_cache
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.usefixtures("redis_url")  # authenticated requests are rate limited in Redis

TTL_S = 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """The cache's clock, moved by the tests: no waiting on wall time."""
    fake = FakeClock()
    monkeypatch.setattr(api_key_cache, "clock", fake)
    api_key_cache.clear()
    yield fake
    api_key_cache.clear()


@pytest.fixture
def cached():
    with override_settings(AUTH_CACHE_TTL_S=TTL_S):
        yield


def _key(client: APIClient) -> ApiKey:
    return ApiKey.objects.get(prefix=client.raw_key.partition(".")[0])


def _usage(client: APIClient) -> tuple[int, str | None]:
    response = client.get("/v1/usage")
    return response.status_code, response.json().get("error", {}).get("code")


def _apikey_queries(context: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in context.captured_queries if "tenants_apikey" in query["sql"]]


def test_a_cache_hit_skips_the_key_lookup(api, cached, django_assert_num_queries):
    assert _usage(api)[0] == 200  # verifies and caches the key (and records its first use)
    with override_settings(AUTH_CACHE_TTL_S=0), CaptureQueriesContext(connection) as uncached:
        assert _usage(api)[0] == 200
    assert len(_apikey_queries(uncached)) == 1  # the lookup by prefix, with its tenant
    with django_assert_num_queries(len(uncached) - 1) as hit:
        assert _usage(api)[0] == 200
    assert _apikey_queries(hit) == []


def test_a_key_revoked_in_this_process_is_refused_at_once(api, cached):
    assert _usage(api) == (200, None)
    assert len(api_key_cache) == 1
    api_key_revoke(api_key=_key(api), actor="tests")
    assert _usage(api) == (401, "invalid_api_key")


def test_a_change_elsewhere_holds_within_the_ttl(api, tenant, cached, clock):
    """Another process's change (here a bare UPDATE, which clears nothing in
    this process) is seen once the entry is AUTH_CACHE_TTL_S old."""
    assert _usage(api) == (200, None)
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    clock.now += TTL_S - 0.01
    assert _usage(api) == (200, None)  # the documented window: still the cached tenant
    clock.now += 0.01
    assert _usage(api) == (403, "tenant_suspended")

    Tenant.objects.filter(pk=tenant.pk).update(is_active=True)
    assert _usage(api) == (200, None)  # refusals are not cached
    ApiKey.objects.filter(prefix=_key(api).prefix).update(revoked=True)
    clock.now += TTL_S
    assert _usage(api) == (401, "invalid_api_key")


def test_failed_lookups_are_not_cached(api, cached):
    key = _key(api)
    ApiKey.objects.filter(pk=key.pk).update(revoked=True)
    assert _usage(api) == (401, "invalid_api_key")
    assert len(api_key_cache) == 0
    ApiKey.objects.filter(pk=key.pk).update(revoked=False)
    assert _usage(api) == (200, None)


def test_a_suspension_saved_in_the_admin_holds_at_once(api, tenant, cached, admin_client):
    assert _usage(api) == (200, None)
    response = admin_client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", {"slug": tenant.slug, "name": tenant.name})
    assert response.status_code == 302, response.content[:2000]
    assert not Tenant.objects.get(pk=tenant.pk).is_active
    assert _usage(api) == (403, "tenant_suspended")


def test_an_expired_key_is_refused_while_cached(tenant, redis_url, cached, monkeypatch):
    api_key, raw_key = api_key_create(tenant=tenant, name="short", expires_at=timezone.now() + timedelta(hours=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get("/v1/usage").status_code == 200
    later = api_key.expiry_date + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    response = client.get("/v1/usage")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


@override_settings(API_KEY_LAST_USED_RESOLUTION_S=60)
def test_last_use_is_still_recorded_once_per_resolution_window(api, cached, monkeypatch):
    def writes() -> int:
        with CaptureQueriesContext(connection) as context:
            assert _usage(api)[0] == 200
        return sum(sql.startswith("UPDATE") for sql in _apikey_queries(context))

    assert writes() == 1  # the first use
    assert writes() == 0  # cached, within the window
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert writes() == 1  # still cached, but the window has passed
    assert _key(api).last_used_at == later
    assert writes() == 0  # the cached entry knows about that write


def test_the_cache_is_bounded_and_keyed_by_a_digest(api, cached, clock):
    cache = ApiKeyCache(clock=clock)
    key = _key(api)
    with override_settings(AUTH_CACHE_MAX_ENTRIES=2):
        for raw in ("a.1", "b.2", "c.3"):
            cache.put(cache.digest(raw), key, ticket=cache.ticket())
        assert len(cache) == 2
        assert cache.get(cache.digest("a.1")) is None  # the least recently used went
        assert cache.get(cache.digest("c.3")) is not None
    assert all(api.raw_key.encode() not in digest for digest in cache._entries)
    # A lookup that began before a clear() is not cached: it may have read the row before a revocation.
    ticket = cache.ticket()
    cache.clear()
    cache.put(cache.digest("d.4"), key, ticket=ticket)
    assert len(cache) == 0
    # An entry lives AUTH_CACHE_TTL_S from the start of its lookup, however long the lookup took.
    ticket = cache.ticket()
    clock.now += 1.5
    with override_settings(AUTH_CACHE_TTL_S=2):
        cache.put(cache.digest("e.5"), key, ticket=ticket)
        clock.now += 0.5
        assert cache.get(cache.digest("e.5")) is None


def test_a_ttl_of_zero_turns_the_cache_off(api):
    assert _usage(api)[0] == 200
    assert len(api_key_cache) == 0


# --- across processes ----------------------------------------------------------


def _revoke_in_database(database_url: str, prefix: str) -> None:
    """Revoke as another process would (the admin, a command on another host)."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30) as db:
            assert db.execute("UPDATE tenants_apikey SET revoked = 1 WHERE prefix = ?", (prefix,)).rowcount == 1
        return
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as db:
        assert db.execute("UPDATE tenants_apikey SET revoked = true WHERE prefix = %s", (prefix,)).rowcount == 1


@pytest.mark.integration
def test_revocation_holds_on_every_web_process_within_the_ttl(tmp_path):
    """Three web processes (one per port, so each is addressed on its own)
    cache the key; after the revocation commits, each answers 401 within
    AUTH_CACHE_TTL_S plus a margin for a loaded machine."""
    from core.redis_server import free_port
    from harness.stack import ROOT, Stack

    ttl, margin = 2.0, 3.0
    stack = Stack(tmp_path, worker_threads=1, extra_env={"AUTH_CACHE_TTL_S": str(ttl), "LOG_LEVEL": "WARNING"}).start()
    extra: list[subprocess.Popen] = []
    try:
        urls = [stack.base_url]
        for _ in range(2):
            port = free_port()
            env = {**os.environ, **stack.env, "PORT": str(port), "WEB_CONCURRENCY": "1"}
            argv = [sys.executable, "-m", "gunicorn", "config.asgi:application", "-c", "config/gunicorn.conf.py"]
            extra.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        sessions = [requests.Session() for _ in urls]
        for session in sessions:
            session.headers.update(stack.headers())

        def status(index: int) -> int | None:
            try:
                return sessions[index].get(f"{urls[index]}/v1/usage", timeout=30).status_code
            except requests.ConnectionError:
                return None  # still starting

        for index in range(len(urls)):
            stack.wait_until(lambda index=index: status(index) == 200, timeout=60, what=f"web process {index}")
        # Each process verified and cached the key; it is accepted right up to the revocation.
        assert [status(index) for index in range(len(urls))] == [200] * len(urls)
        _revoke_in_database(stack.env["DATABASE_URL"], stack.api_key.partition(".")[0])
        revoked_at = time.monotonic()

        refused_after: dict[int, tuple[float, int | None]] = {}

        def poll(index: int) -> None:
            while time.monotonic() - revoked_at < ttl + margin + 30:  # give up long after the bound
                code = status(index)
                if code != 200:
                    refused_after[index] = (time.monotonic() - revoked_at, code)
                    return
                time.sleep(0.05)

        pollers = [threading.Thread(target=poll, args=(index,)) for index in range(len(urls))]
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()
    finally:
        for process in extra:
            os.killpg(process.pid, signal.SIGTERM)
        for process in extra:
            process.wait(timeout=30)
        stack.stop()
    print(f"seconds from the revocation to each process's first 401: {refused_after}")
    assert sorted(refused_after) == list(range(len(urls))), refused_after
    assert {code for _, code in refused_after.values()} == {401}, refused_after
    assert max(elapsed for elapsed, _ in refused_after.values()) <= ttl + margin, refused_after
