"""One Redis client construction (core.redis): cached per process, URL and
timeouts, reused by every caller, never rebuilt inside a loop."""

from __future__ import annotations

import time

import pytest
import redis
from django.test import RequestFactory

from core import redis as core_redis
from core.redis import redis_client
from voices.models import VoicePrompt

pytestmark = pytest.mark.usefixtures("redis_url")  # the session's redis-server


@pytest.fixture
def constructions(monkeypatch) -> list[tuple]:
    """Every redis.Redis built from a URL, by anyone, from now on."""
    core_redis.redis_clients_reset()
    built: list[tuple] = []
    original = redis.Redis.from_url.__func__

    def counting(cls, url, **kwargs):
        built.append((url, kwargs.get("socket_timeout")))
        return original(cls, url, **kwargs)

    monkeypatch.setattr(redis.Redis, "from_url", classmethod(counting))
    yield built
    core_redis.redis_clients_reset()


def test_one_client_per_process_url_and_timeouts(constructions, settings, monkeypatch):
    client = redis_client()
    assert redis_client() is client and len(constructions) == 1
    blocking = redis_client(socket_timeout=35)
    assert blocking is not client and redis_client(socket_timeout=35) is blocking
    # Another URL (tests, a changed setting): another client.
    original_url = settings.REDIS_URL
    settings.REDIS_URL = original_url.rsplit("/", 1)[0] + "/1"
    assert redis_client() is not client
    settings.REDIS_URL = original_url
    assert redis_client() is client
    # A forked child (another pid) never uses its parent's client.
    monkeypatch.setattr(core_redis.os, "getpid", lambda: -1)
    child = redis_client()
    assert child is not client and redis_client() is child
    assert len(constructions) == 4


@pytest.mark.django_db
def test_a_voice_wait_builds_one_client_not_one_per_turn_of_its_loop(constructions, tenant):
    from voices import services

    voice = VoicePrompt.objects.create(tenant=tenant, name="Slow", upload_key="x", upload_size_bytes=1)
    started = time.monotonic()
    waited = services.voice_wait_analyzed(voice=voice, timeout_s=2.5)  # no worker: it waits it out, in turns
    assert waited.status == "processing" and time.monotonic() - started >= 2.5
    # One client per purpose (the waiting-slot script, the blocking read for
    # the notice), each built once however many turns the loop took.
    assert len(constructions) == len(set(constructions)) <= 2, constructions


@pytest.mark.django_db
def test_callers_share_the_cached_clients(constructions, tenant, settings):
    """A second round of every Redis caller builds nothing."""
    from audit.services import auth_failure_record
    from core.views import readyz
    from jobs import events
    from jobs.selectors import queue_depths
    from tenants.ratelimit import rate_limit_check
    from voices import services

    voice = VoicePrompt.objects.create(tenant=tenant, name="V", upload_key="x", upload_size_bytes=1)

    def every_caller() -> None:
        assert rate_limit_check(buckets={"test:shared": 100}) is not None
        auth_failure_record(request=RequestFactory().get("/v1/jobs"), prefix="abc", reason="unknown_key")
        assert events.job_event_append(job_id="shared", event="status", data={}) is not None
        queue_depths()
        assert readyz(RequestFactory().get("/readyz")).status_code == 200
        services._voice_finish(voice, status="processing")  # posts the notice
        services._wait_for_notice(voice.id, 1)

    every_caller()
    first_round = len(constructions)
    assert first_round <= 3, constructions  # the default, the 1 s (events, queues) and the blocking one
    every_caller()
    assert len(constructions) == first_round, constructions
