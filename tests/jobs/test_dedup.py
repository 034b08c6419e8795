"""Quotas, usage, idempotency, dedup, priorities and fair share."""

from __future__ import annotations

import threading

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Job
from tenants.models import Tenant, UsagePeriod

TTS = "/v1/tts"
# Submissions dispatch on commit: these tests need real commits.
pytestmark = pytest.mark.django_db(transaction=True)



def _messages(stub_broker, queue: str) -> list[str]:
    import dramatiq

    import jobs.actors  # noqa: F401  (declares the queues)

    return [dramatiq.Message.decode(raw).args[0] for raw in list(stub_broker.queues[queue].queue)]



# ------------------------------------------------------------------ quotas


def test_too_many_active_jobs_is_429(api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_active_jobs=2)
    for index in range(2):
        assert api.post(TTS, {"text": f"job {index}", "engine": "tone"}, format="json").status_code == 202
    refused = api.post(TTS, {"text": "one too many", "engine": "tone"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_active_jobs"
    assert refused.json()["error"]["details"] == {"active_jobs": 2, "limit": 2}
    assert Job.objects.filter(tenant=tenant).count() == 2


def test_monthly_seconds_quota_is_402_once_used_up(api, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(monthly_seconds_quota=1)
    first = api.post(TTS, {"text": "one two three four five six seven eight nine ten eleven twelve", "engine": "tone"}, format="json")
    services.job_run(job_id=first.json()["id"])  # 1.2 s of audio
    refused = api.post(TTS, {"text": "more please", "engine": "tone"}, format="json")
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert refused.json()["error"]["details"]["used_seconds"] == pytest.approx(1.2, abs=0.05)
    # A cache hit costs nothing, so it is still served.
    again = api.post(TTS, {"text": "one two three four five six seven eight nine ten eleven twelve", "engine": "tone"}, format="json")
    assert again.status_code == 202 and again.json()["cache_hit"] is True


def test_usage_reports_counters_and_limits(api, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(monthly_seconds_quota=100, allow_high_priority=True)
    job_id = api.post(TTS, {"text": "count me", "engine": "tone"}, format="json").json()["id"]
    services.job_run(job_id=job_id)
    api.post(TTS, {"text": "count me", "engine": "tone"}, format="json")  # cache hit
    api.post(TTS, {"text": "still queued", "engine": "tone"}, format="json")
    usage = api.get("/v1/usage").json()
    assert usage["jobs"]["succeeded"] == 2 and usage["jobs"]["queued"] == 1 and usage["active_jobs"] == 1
    assert usage["generated_seconds"]["audio"] == pytest.approx(0.2, abs=0.02)
    assert usage["cache_hits"] == 1
    assert usage["limits"]["monthly_seconds_quota"] == 100 and usage["limits"]["allow_high_priority"] is True
    assert usage["quota_remaining_seconds"] == pytest.approx(99.8, abs=0.02)


# ------------------------------------------------------------- idempotency


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


def test_concurrent_duplicates_create_exactly_one_job(tenant, stub_broker):
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


# ------------------------------------------------------------------- dedup


def test_identical_request_reuses_the_finished_output(api, tenant, monkeypatch):
    first = api.post(TTS, {"text": "Say  this\tonce.", "engine": "tone", "format": "wav"}, format="json").json()
    services.job_run(job_id=first["id"])
    objects_before = len(default_storage.listdir(f"tenants/{tenant.id}/jobs")[0])
    monkeypatch.setattr("engines.registry.get_engine", lambda name: pytest.fail("the engine must not run"))
    hit = api.post(TTS, {"text": "Say this once.", "engine": "tone", "format": "wav"}, format="json").json()
    assert hit["cache_hit"] is True and hit["status"] == "succeeded" and hit["id"] != first["id"]
    source = Job.objects.get(id=first["id"])
    assert Job.objects.get(id=hit["id"]).result_key == source.result_key  # no new object
    assert len(default_storage.listdir(f"tenants/{tenant.id}/jobs")[0]) == objects_before
    assert api.get(f"/v1/jobs/{hit['id']}/result").status_code == 200
    usage = UsagePeriod.objects.get(tenant=tenant)
    assert (usage.jobs_succeeded, usage.cache_hits) == (1, 1)  # no quota seconds for the hit


def test_other_inputs_or_cache_false_run_again(api, tenant):
    first = api.post(TTS, {"text": "Same words.", "engine": "tone"}, format="json").json()
    services.job_run(job_id=first["id"])
    for variant in ({"format": "mp3"}, {"speed": 1.5}, {"cache": False}):
        body = api.post(TTS, {"text": "Same words.", "engine": "tone", **variant}, format="json").json()
        assert body["cache_hit"] is False and body["status"] == "queued", variant


def test_identical_request_joins_a_running_job(api, tenant, stub_broker):
    leader = api.post(TTS, {"text": "Join me.", "engine": "tone"}, format="json").json()
    follower = api.post(TTS, {"text": "Join me.", "engine": "tone"}, format="json").json()
    assert follower["status"] == "queued" and follower["cache_hit"] is True
    assert _messages(stub_broker, "tts") == [leader["id"]]  # only the leader runs
    services.job_run(job_id=leader["id"])
    joined = api.get(f"/v1/jobs/{follower['id']}").json()
    assert joined["status"] == "succeeded" and joined["result"]["size_bytes"] == api.get(f"/v1/jobs/{leader['id']}").json()["result"]["size_bytes"]


def test_when_the_joined_job_is_canceled_one_follower_runs_for_all(api, tenant, stub_broker):
    leader = api.post(TTS, {"text": "Cancel the leader.", "engine": "tone"}, format="json").json()
    first, second = (api.post(TTS, {"text": "Cancel the leader.", "engine": "tone"}, format="json").json() for _ in range(2))
    api.post(f"/v1/jobs/{leader['id']}/cancel")
    assert _messages(stub_broker, "tts") == [leader["id"], first["id"]]  # one engine run, not two
    services.job_run(job_id=first["id"])
    assert [Job.objects.get(id=job["id"]).status for job in (first, second)] == ["succeeded", "succeeded"]
    assert Job.objects.get(id=second["id"]).result_key == Job.objects.get(id=first["id"]).result_key


def test_a_high_priority_request_does_not_join_a_normal_job(api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(allow_high_priority=True)
    api.post(TTS, {"text": "Same text.", "engine": "tone"}, format="json")
    urgent = api.post(TTS, {"text": "Same text.", "engine": "tone", "priority": "high"}, format="json").json()
    assert urgent["cache_hit"] is False and _messages(stub_broker, "tts-high") == [urgent["id"]]


# -------------------------------------------------------------- priorities


def test_high_priority_needs_permission_and_uses_its_own_queue(api, tenant, stub_broker):
    refused = api.post(TTS, {"text": "urgent", "engine": "tone", "priority": "high"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "priority_not_allowed"
    Tenant.objects.filter(pk=tenant.pk).update(allow_high_priority=True)
    accepted = api.post(TTS, {"text": "urgent", "engine": "tone", "priority": "high"}, format="json")
    assert accepted.status_code == 202 and accepted.json()["priority"] == "high"
    assert _messages(stub_broker, "tts-high") == [accepted.json()["id"]]
    assert _messages(stub_broker, "tts") == []


# -------------------------------------------------------------- fair share


def test_a_tenants_burst_waits_in_the_database_not_in_the_queue(api, other_api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight=3, allow_high_priority=True)
    burst = [api.post(TTS, {"text": f"burst {i}", "engine": "tone"}, format="json").json()["id"] for i in range(20)]
    assert _messages(stub_broker, "tts") == burst[:3]
    other = other_api.post(TTS, {"text": "another tenant", "engine": "tone"}, format="json").json()["id"]
    assert _messages(stub_broker, "tts") == [*burst[:3], other]  # behind 3, not 20
    urgent = api.post(TTS, {"text": "urgent", "engine": "tone", "priority": "high"}, format="json").json()["id"]
    services.job_run(job_id=burst[0])  # a slot frees: the high-priority job goes first
    assert _messages(stub_broker, "tts-high") == [urgent]
    services.job_run(job_id=urgent)
    assert _messages(stub_broker, "tts")[-1] == burst[3]


def test_the_reaper_dispatches_within_the_fair_share(tenant, stub_broker, monkeypatch):
    from jobs.services import TtsParams

    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight=2)
    monkeypatch.setattr(services, "_job_send", lambda job_id, route=None: False)  # Redis down at submit
    params = [TtsParams(text=f"t{i}", language="en", engine="tone", format="wav", speed=1.0) for i in range(5)]
    for item in params:
        services.job_submit_tts(tenant=tenant, api_key=None, params=item, metadata={}, actor="t", ip=None)
    assert Job.objects.filter(enqueued_at__isnull=False).count() == 0
    monkeypatch.undo()
    assert services.jobs_resend_unsent(older_than_s=0) == 2
    assert len(_messages(stub_broker, "tts")) == 2


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


def test_a_cache_hit_is_created_started_and_finished_at_once(api, tenant):
    first = api.post(TTS, {"text": "Timestamps.", "engine": "tone"}, format="json").json()
    services.job_run(job_id=first["id"])
    hit = api.post(TTS, {"text": "Timestamps.", "engine": "tone"}, format="json").json()
    assert hit["created_at"] == hit["started_at"] == hit["finished_at"]
