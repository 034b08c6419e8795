"""Idempotency-Key on submits: the same key and body give the same job, keys are
per tenant, concurrent duplicates make exactly one job, a claim in progress is 409."""

from __future__ import annotations

import threading

import pytest
from rest_framework.test import APIClient

from jobs.models import Job

TTS = "/v1/tts"
# Submissions dispatch on commit: these tests need real commits.
pytestmark = pytest.mark.django_db(transaction=True)


def test_same_idempotency_key_and_body_returns_the_same_job(api, tenant):
    body = {"text": "Exactly once.", "engine": "tone", "cache": False}
    first = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    again = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Job.objects.filter(tenant=tenant).count() == 1
    other = api.post(TTS, {**body, "text": "Something else."}, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="order-43").json()["id"] != first.json()["id"]


def test_idempotency_keys_are_per_tenant_and_errors_are_not_recorded(api, other_api, tenant):
    body = {"text": "Mine.", "engine": "tone"}
    assert api.post(TTS, {"text": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 400
    assert api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 202  # the error was not kept
    assert other_api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 202
    bad = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="bad key\u00e9")
    assert bad.status_code == 400


def test_concurrent_duplicates_create_exactly_one_job(tenant, stub_broker, redis_url):
    from tenants.services import api_key_create

    _, raw = api_key_create(tenant=tenant, name="concurrent")
    results: list[tuple[int, str]] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        barrier.wait()
        response = client.post(TTS, {"text": "Only one.", "engine": "tone", "cache": False}, format="json", HTTP_IDEMPOTENCY_KEY="same")
        results.append((response.status_code, response.json()["id"]))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Job.objects.filter(tenant=tenant).count() == 1
    assert len({job_id for _, job_id in results}) == 1
    assert sorted(status for status, _ in results) == [200] * 7 + [202]


def test_a_key_still_in_progress_is_409_and_a_dead_claim_is_taken_over(api, tenant, settings):
    from datetime import timedelta

    from django.utils import timezone

    from core.models import IdempotencyRecord

    body = {"text": "Claimed elsewhere.", "engine": "tone"}
    first = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    record = IdempotencyRecord.objects.get(key="busy")
    # As if still running, its job not committed yet (a committed one is replayed: below).
    IdempotencyRecord.objects.filter(pk=record.pk).update(response_status=None, response_body=None, resource_id=None)
    settings.IDEMPOTENCY_WAIT_S = 0.2
    waiting = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert waiting.status_code == 409 and waiting.json()["error"]["code"] == "idempotency_request_in_progress"
    # When the claim can be taken over if its request died: within the in-progress timeout.
    assert 1 <= int(waiting["Retry-After"]) <= settings.IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - timedelta(minutes=5))  # its request died
    retried = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert retried.status_code == 202 and retried.json()["id"] != first.json()["id"]
    assert api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="busy").json()["id"] == retried.json()["id"]


# ------------------------------------------------ the response and the job, atomically


class _InstanceDied(BaseException):
    """The instance going away mid-request: no ``except Exception`` handler
    runs (a SIGKILL runs none at all)."""


def _client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def _retry_while_the_first_is_held(api, monkeypatch, module, name: str, body: dict, *, key: str):
    """Send ``body`` with ``key`` from another thread, hold that request inside
    ``module.name`` (patched: it waits there, then runs as before), send the
    same request again meanwhile, then let the first go on. Returns (first
    response, retry's response)."""
    real = getattr(module, name)
    reached, release = threading.Event(), threading.Event()
    first: list = []

    def held(*args, **kwargs):
        if threading.current_thread() is thread:
            reached.set()
            release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    thread = threading.Thread(target=lambda: first.append(_client(api.raw_key).post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)))
    thread.start()
    try:
        assert reached.wait(20)
        retried = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    finally:
        release.set()
        thread.join(30)
    return first[0], retried


def test_a_request_that_dies_after_its_job_committed_is_replayed_not_repeated(api, tenant, monkeypatch):
    import jobs.apis

    body = {"text": "Committed, then the instance died.", "engine": "tone", "cache": False}
    represent, died = jobs.apis._represent, []

    def dying(job, request):
        if not died:
            died.append(str(job.id))
            raise _InstanceDied
        return represent(job, request)

    monkeypatch.setattr(jobs.apis, "_represent", dying)
    with pytest.raises(_InstanceDied):
        api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="died-after-commit")
    assert Job.objects.filter(tenant=tenant).count() == 1  # committed before it died
    retried = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="died-after-commit")
    assert (retried.status_code, retried["Idempotent-Replayed"]) == (200, "true"), retried.content
    assert retried.json()["id"] == died[0] and retried["Location"] == f"/v1/jobs/{died[0]}"
    assert Job.objects.filter(tenant=tenant).count() == 1
    # From now on the key replays what the client was given.
    again = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="died-after-commit")
    assert (again.status_code, again.json()["id"]) == (200, died[0])
    assert Job.objects.filter(tenant=tenant).count() == 1


def test_a_retry_while_the_first_request_hangs_after_its_commit_gets_its_job(api, tenant, settings, monkeypatch):
    """The first request committed its job and hangs (or its instance was
    killed) before answering: a retry is answered with that job at once, even
    where the claim counts as dead, rather than taking the key over."""
    import jobs.apis

    settings.IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S = 0  # a claim without a response is taken over at once
    body = {"text": "Committed, then hung.", "engine": "tone", "cache": False}
    # Held while it builds its answer: after the commit.
    first, retried = _retry_while_the_first_is_held(api, monkeypatch, jobs.apis, "_represent", body, key="hung-after-commit")
    job = Job.objects.get(tenant=tenant)
    assert (retried.status_code, retried["Idempotent-Replayed"], retried.json()["id"]) == (200, "true", str(job.id)), retried.content
    assert (first.status_code, first.json()["id"]) == (202, str(job.id))
    assert api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="hung-after-commit").json() == first.json()


def test_a_request_whose_key_was_taken_over_before_its_commit_creates_nothing(api, tenant, settings, monkeypatch):
    """A claim taken over while its request was still alive: the request that
    lost it rolls its job back (409), so one job answers the key."""
    import jobs.services.submit

    settings.IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S = 0
    body = {"text": "Slow before its commit.", "engine": "tone", "cache": False}
    # Held before its transaction begins.
    first, retried = _retry_while_the_first_is_held(api, monkeypatch, jobs.services.submit, "_check_size", body, key="taken-over")
    assert retried.status_code == 202, retried.content
    assert (first.status_code, first.json()["error"]["code"]) == (409, "idempotency_request_in_progress")
    assert [str(job_id) for job_id in Job.objects.filter(tenant=tenant).values_list("id", flat=True)] == [retried.json()["id"]]
    again = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="taken-over")
    assert (again.status_code, again.json()["id"]) == (200, retried.json()["id"])


def test_an_error_inside_the_jobs_transaction_releases_the_key(api, tenant, monkeypatch):
    """The job and the key's link roll back together: nothing was created, so
    the same key may be tried again."""
    import jobs.services.submit
    from audit.models import AuditEvent
    from core.errors import ApplicationError
    from core.models import IdempotencyRecord

    body = {"text": "Rolled back.", "engine": "tone", "cache": False}
    insert = jobs.services.submit.prepared_row_insert

    def failing_at_the_audit_row(row):  # after the job's row is written
        if isinstance(row.instance, AuditEvent):
            raise ApplicationError("service_unavailable", "Audit log unavailable.", status=503)
        return insert(row)

    monkeypatch.setattr(jobs.services.submit, "prepared_row_insert", failing_at_the_audit_row)
    assert api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="rolled-back").status_code == 503
    assert not Job.objects.exists() and not IdempotencyRecord.objects.filter(key="rolled-back").exists()
    monkeypatch.setattr(jobs.services.submit, "prepared_row_insert", insert)
    assert api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="rolled-back").status_code == 202


def test_a_key_whose_unanswered_job_is_gone_runs_again(api, tenant):
    """The job a dead request created was deleted since (purged, removed by
    staff): nothing is left to replay, so the key is free again."""
    from core.models import IdempotencyRecord

    body = {"text": "Purged.", "engine": "tone", "cache": False}
    first = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="gone")
    IdempotencyRecord.objects.filter(key="gone").update(response_status=None, response_body=None)  # its instance died
    Job.objects.filter(id=first.json()["id"]).delete()
    retried = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="gone")
    assert retried.status_code == 202 and retried.json()["id"] != first.json()["id"]
    assert Job.objects.filter(tenant=tenant).count() == 1
