"""Dedup: identical requests reuse a finished output or join a running job."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from jobs import services
from jobs.models import Job
from tenants.models import Tenant, UsagePeriod
from tests.support.broker import queued_job_ids

TTS = "/v1/tts"
# Submissions dispatch on commit: these tests need real commits.
pytestmark = pytest.mark.django_db(transaction=True)


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
    assert queued_job_ids(stub_broker, "tts") == [leader["id"]]  # only the leader runs
    services.job_run(job_id=leader["id"])
    joined = api.get(f"/v1/jobs/{follower['id']}").json()
    assert (
        joined["status"] == "succeeded"
        and joined["result"]["size_bytes"] == api.get(f"/v1/jobs/{leader['id']}").json()["result"]["size_bytes"]
    )


def test_when_the_joined_job_is_canceled_one_follower_runs_for_all(api, tenant, stub_broker):
    leader = api.post(TTS, {"text": "Cancel the leader.", "engine": "tone"}, format="json").json()
    first, second = (api.post(TTS, {"text": "Cancel the leader.", "engine": "tone"}, format="json").json() for _ in range(2))
    api.post(f"/v1/jobs/{leader['id']}/cancel")
    assert queued_job_ids(stub_broker, "tts") == [leader["id"], first["id"]]  # one engine run, not two
    services.job_run(job_id=first["id"])
    assert [Job.objects.get(id=job["id"]).status for job in (first, second)] == ["succeeded", "succeeded"]
    assert Job.objects.get(id=second["id"]).result_key == Job.objects.get(id=first["id"]).result_key


def test_a_high_priority_request_does_not_join_a_normal_job(api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(allow_high_priority=True)
    api.post(TTS, {"text": "Same text.", "engine": "tone"}, format="json")
    urgent = api.post(TTS, {"text": "Same text.", "engine": "tone", "priority": "high"}, format="json").json()
    assert urgent["cache_hit"] is False and queued_job_ids(stub_broker, "tts-high") == [urgent["id"]]


def test_a_cache_hit_is_created_started_and_finished_at_once(api, tenant):
    first = api.post(TTS, {"text": "Timestamps.", "engine": "tone"}, format="json").json()
    services.job_run(job_id=first["id"])
    hit = api.post(TTS, {"text": "Timestamps.", "engine": "tone"}, format="json").json()
    assert hit["created_at"] == hit["started_at"] == hit["finished_at"]


def test_an_output_about_to_expire_is_not_reused(api, tenant, settings):
    """Reused only while it is kept DEDUP_MIN_RESULT_LIFETIME_S longer (the
    new job's client must have time to download it)."""
    from datetime import timedelta

    from django.utils import timezone

    first = api.post(TTS, {"text": "Kept a little while.", "engine": "tone"}, format="json").json()
    services.job_run(job_id=first["id"])
    lifetime = timedelta(seconds=settings.DEDUP_MIN_RESULT_LIFETIME_S)
    Job.objects.filter(id=first["id"]).update(result_expires_at=timezone.now() + lifetime - timedelta(seconds=5))
    soon_gone = api.post(TTS, {"text": "Kept a little while.", "engine": "tone"}, format="json").json()
    assert (soon_gone["cache_hit"], soon_gone["status"]) == (False, "queued")
    Job.objects.filter(id=first["id"]).update(result_expires_at=timezone.now() + lifetime + timedelta(minutes=5))
    reused = api.post(TTS, {"text": "Kept a little while.", "engine": "tone"}, format="json").json()
    assert (reused["cache_hit"], reused["status"]) == (True, "succeeded")


@pytest.mark.parametrize("high_only", [False, True])
def test_the_dedup_lookup_reads_only_its_keys_rows(tenant, high_only):
    """Every submission runs this lookup. Its plan must seek the key in
    job_tenant_dedup, not walk the tenant's jobs newest first (as SQLite did
    when that index ended in status: a lookup that grew with every job)."""
    from django.db import connection

    from jobs.services.dedup import _dedup_candidates_sql

    # A tenant's history of other requests, with the planner's statistics on
    # it: on empty tables Postgres picks among equally cheap indexes by chance.
    Job.objects.bulk_create(
        Job(tenant=tenant, kind=Job.Kind.TTS, engine="tone", status="succeeded", dedup_key=f"{index:064x}") for index in range(2000)
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")
    sql = _dedup_candidates_sql(connection.vendor, high_only=high_only)
    params = [tenant.pk.hex if connection.vendor == "sqlite" else tenant.pk, "k" * 64, "succeeded", "2026-01-01", "queued", "running"]
    params += ["high"] if high_only else []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN " + sql, params)
            plan = " ".join(row[0] for row in cursor.fetchall())
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql.replace("%s", "?"), params)
            plan = " ".join(row[-1] for row in cursor.fetchall())
    assert "job_tenant_dedup" in plan, plan
    assert "job_tenant_newest" not in plan, plan
