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
    IdempotencyRecord.objects.filter(pk=record.pk).update(response_status=None, response_body=None)  # as if still running
    settings.IDEMPOTENCY_WAIT_S = 0.2
    waiting = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert waiting.status_code == 409 and waiting.json()["error"]["code"] == "idempotency_request_in_progress"
    # When the claim can be taken over if its request died: within the in-progress timeout.
    assert 1 <= int(waiting["Retry-After"]) <= settings.IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - timedelta(minutes=5))  # its request died
    retried = api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert retried.status_code == 202 and retried.json()["id"] != first.json()["id"]
    assert api.post(TTS, body, format="json", HTTP_IDEMPOTENCY_KEY="busy").json()["id"] == retried.json()["id"]
