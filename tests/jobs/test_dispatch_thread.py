"""The web process's dispatch thread (JOB_DISPATCH_IN_BACKGROUND, on in
every deployed process): a submission's answer does not wait for its
dispatch, and the thread keeps fair share, priorities and the
no-job-lost rule of the synchronous dispatch."""

from __future__ import annotations

import threading
import time

import pytest

import jobs.actors  # noqa: F401  (declares the queues on the stub broker)
from jobs import routing
from jobs.models import Job
from jobs.services import dispatch as dispatch_module
from tenants.models import Tenant
from tests.support.broker import queued_job_ids

TTS = "/v1/tts"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _dispatch_thread(settings):
    settings.JOB_DISPATCH_IN_BACKGROUND = True


def _eventually(check, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def _submit(api, text: str, **fields) -> str:
    response = api.post(TTS, {"text": text, "engine": "tone", **fields}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_submissions_are_dispatched_by_the_thread_each_once(api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight=50)
    job_ids = [_submit(api, f"thread dispatch {index}") for index in range(20)]
    assert _eventually(lambda: len(queued_job_ids(stub_broker, "tts")) >= 20)
    time.sleep(0.2)  # a second send of any of them would show by now
    assert sorted(queued_job_ids(stub_broker, "tts")) == sorted(job_ids)
    assert not Job.objects.filter(id__in=job_ids, enqueued_at__isnull=True).exists()


def test_the_thread_keeps_the_tenants_share_and_priorities(api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight=3, allow_high_priority=True)
    burst = [_submit(api, f"burst {index}") for index in range(8)]
    urgent = _submit(api, "urgent", priority="high")
    assert _eventually(lambda: len(queued_job_ids(stub_broker, "tts")) + len(queued_job_ids(stub_broker, "tts-high")) >= 3)
    time.sleep(0.2)
    queued = queued_job_ids(stub_broker, "tts") + queued_job_ids(stub_broker, "tts-high")
    assert len(queued) == 3  # the share, however the requests were coalesced
    assert set(queued) <= set(burst) | {urgent}
    assert Job.objects.filter(enqueued_at__isnull=False).count() == 3


def test_a_broker_outage_loses_nothing_and_the_thread_carries_on(api, stub_broker, monkeypatch):
    real_send = routing.message_send
    broker_down = threading.Event()
    broker_down.set()
    refused: list[str] = []

    def send(**kwargs):
        if broker_down.is_set():
            refused.append(kwargs["args"][0])
            raise ConnectionError("redis is down")
        real_send(**kwargs)

    monkeypatch.setattr(routing, "message_send", send)
    first = _submit(api, "while redis is down")
    # Marked, refused, then unmarked: kept for the next dispatch or the repair sweep.
    assert _eventually(lambda: refused and Job.objects.filter(id=first, enqueued_at__isnull=True).exists())
    assert Job.objects.get(id=first).status == "queued"
    broker_down.clear()
    second = _submit(api, "redis is back")
    assert _eventually(lambda: len(queued_job_ids(stub_broker, "tts")) >= 2)
    assert sorted(queued_job_ids(stub_broker, "tts")) == sorted([first, second])


def test_what_is_pending_at_exit_is_dispatched(tenant, stub_broker, monkeypatch):
    """The exit hook dispatches what the thread had not reached yet."""
    from jobs import services
    from jobs.services import TtsParams

    dispatcher = dispatch_module._Dispatcher()  # its thread never starts: requests stay pending
    monkeypatch.setattr(dispatch_module, "_dispatcher", dispatcher)
    monkeypatch.setattr(dispatcher, "request", lambda tenant_id, limits: dispatcher._requests.put((tenant_id, limits)))
    params = TtsParams(text="pending at exit", language="en", engine="tone", format="wav", speed=1.0)
    job = services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="test", ip=None)
    assert queued_job_ids(stub_broker, "tts") == []
    dispatcher.drain()
    assert queued_job_ids(stub_broker, "tts") == [str(job.id)]


def test_a_full_share_is_seen_without_waiting_for_the_tenants_turn(api, tenant, stub_broker):
    """Under a backlog the tenant's share is full and a dispatch has nothing
    to send: it finds that out without taking the tenant's dispatch turn (on
    SQLite a write transaction, the database's one writer lock), so it never
    queues behind the other writers for nothing."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections, transaction

    from core.locks import named_lock_in_transaction

    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight=1)
    first, waiting = _submit(api, "in flight"), _submit(api, "waits for room")
    assert _eventually(lambda: queued_job_ids(stub_broker, "tts") == [first])
    holding, release = threading.Event(), threading.Event()

    def hold_the_turn() -> None:
        try:
            with transaction.atomic():
                named_lock_in_transaction(f"dispatch:{tenant.pk}")
                holding.set()
                assert release.wait(timeout=20)
        finally:
            connections.close_all()

    def dispatch() -> int:
        try:
            return dispatch_module.jobs_dispatch(tenant_id=tenant.pk)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(hold_the_turn)
        try:
            assert holding.wait(timeout=10)
            assert pool.submit(dispatch).result(timeout=3) == 0  # while the turn is still held
        finally:
            release.set()
        holder.result(timeout=10)
    assert queued_job_ids(stub_broker, "tts") == [first]
    assert Job.objects.get(id=waiting).enqueued_at is None
