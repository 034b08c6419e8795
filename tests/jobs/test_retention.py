"""purge_expired: expired results and inputs leave storage, jobs are marked
expired, shared (cache-hit) outputs stay while in use, orphans are swept,
old records are trimmed; safe to re-run and to run concurrently."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone

from core.models import IdempotencyRecord
from jobs import services
from jobs.models import Job
from jobs.retention import jobs_purge
from jobs.services import TtsParams
from tenants.models import Tenant
from voices.models import VoicePrompt
from webhooks.models import Delivery

# Expiring a job appends to its event stream, in Redis.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_url")]


def _finished_job(tenant, *, text: str = "Kept for a while.", use_cache: bool = False) -> Job:
    params = TtsParams(text=text, language="en", engine="tone", format="wav", speed=1.0)
    job = services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="test", ip=None, use_cache=use_cache)
    if job.status == Job.Status.QUEUED:
        services.job_run(job_id=str(job.id))
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    return job


def _with_inputs(job: Job) -> Job:
    """Uploaded inputs as a talking-head job has them (server-made keys)."""
    files = {
        role: default_storage.save(f"tenants/{job.tenant_id}/jobs/{job.id}/input-{role}", ContentFile(b"x" * 100))
        for role in ("image", "audio")
    }
    Job.objects.filter(id=job.id).update(input_files=files)
    job.refresh_from_db()
    return job


def _expire(job: Job, *, ago: timedelta = timedelta(minutes=1)) -> None:
    Job.objects.filter(id=job.id).update(result_expires_at=timezone.now() - ago)


def _age(key: str, seconds: float) -> None:
    """Make a local object look old (orphans are swept only after a grace period)."""
    path = default_storage.path(key)
    moment = timezone.now().timestamp() - seconds
    os.utime(path, (moment, moment))


def _keys(job: Job) -> list[str]:
    return [job.result_key, *(f["key"] for f in job.result_files.values()), *job.input_files.values()]


def test_expired_results_and_inputs_are_deleted_and_the_job_is_marked_expired(tenant, api):
    kept = _with_inputs(_finished_job(tenant, text="Still within retention."))
    gone = _with_inputs(_finished_job(tenant))
    _expire(gone)
    assert all(default_storage.exists(key) for key in _keys(gone))

    report = jobs_purge(now=timezone.now())

    gone.refresh_from_db()
    assert (gone.status, gone.stage, gone.input_files) == ("expired", "expired", {})
    assert not any(default_storage.exists(key) for key in [gone.result_key, *report.keys])
    assert report.jobs_expired == 1 and report.objects_deleted == 3 and report.errors == 0
    kept.refresh_from_db()
    assert kept.status == "succeeded" and all(default_storage.exists(key) for key in _keys(kept))
    # The API says so: the job is expired and its result is gone (410), not a 500 or a 404.
    body = api.get(f"/v1/jobs/{gone.id}").json()
    assert body["status"] == "expired"
    result = api.get(f"/v1/jobs/{gone.id}/result")
    assert result.status_code == 410 and result.json()["error"]["code"] == "result_expired"
    # Safe to re-run: nothing left to do.
    again = jobs_purge(now=timezone.now())
    assert (again.jobs_expired, again.objects_deleted, again.errors) == (0, 0, 0)


def test_dry_run_lists_what_would_go_and_changes_nothing(tenant):
    job = _with_inputs(_finished_job(tenant))
    _expire(job)
    out = StringIO()
    call_command("purge_expired", "--dry-run", stdout=out)
    job.refresh_from_db()
    assert job.status == "succeeded" and all(default_storage.exists(key) for key in _keys(job))
    text = out.getvalue()
    assert all(f"would delete {key}" in text for key in _keys(job))
    assert "[dry run] expired 1 job(s)" in text

    out = StringIO()
    call_command("purge_expired", stdout=out)
    assert "expired 1 job(s)" in out.getvalue() and "[dry run]" not in out.getvalue()
    assert not default_storage.exists(job.result_key)


def test_an_output_shared_by_a_cache_hit_stays_until_every_job_using_it_expired(tenant, api):
    source = _finished_job(tenant, text="Say it twice.", use_cache=True)
    hit = _finished_job(tenant, text="Say it twice.", use_cache=True)
    assert hit.cache_hit and hit.result_key == source.result_key
    _expire(source)
    Job.objects.filter(id=hit.id).update(result_expires_at=timezone.now() + timedelta(days=1))

    report = jobs_purge(now=timezone.now())
    source.refresh_from_db()
    assert source.status == "expired" and report.objects_kept_shared == 1
    assert default_storage.exists(hit.result_key)
    assert api.get(f"/v1/jobs/{hit.id}/result").status_code == 200

    _expire(hit)
    jobs_purge(now=timezone.now())
    assert not default_storage.exists(hit.result_key)


def test_failed_jobs_lose_their_inputs_after_the_tenants_retention(tenant):
    Tenant.objects.filter(pk=tenant.pk).update(result_retention_days=2)
    failed = _with_inputs(_finished_job(tenant))
    recent = _with_inputs(_finished_job(tenant, text="Failed only yesterday."))
    Job.objects.filter(id=failed.id).update(status="failed", error_code="engine_error", finished_at=timezone.now() - timedelta(days=3))
    Job.objects.filter(id=recent.id).update(status="canceled", finished_at=timezone.now() - timedelta(days=1))

    report = jobs_purge(now=timezone.now())

    failed.refresh_from_db()
    assert report.jobs_inputs_purged == 1
    assert failed.status == "failed" and failed.error_code == "engine_error" and failed.input_files == {}
    prefix = f"tenants/{failed.tenant_id}/jobs/{failed.id}"
    assert not default_storage.exists(f"{prefix}/input-image") and not default_storage.exists(f"{prefix}/input-audio")
    assert all(default_storage.exists(key) for key in recent.input_files.values())


def test_a_tenants_retention_sets_when_results_expire(tenant):
    Tenant.objects.filter(pk=tenant.pk).update(result_retention_days=3)
    tenant.refresh_from_db()
    job = _finished_job(tenant)
    lifetime = job.result_expires_at - job.finished_at
    assert timedelta(days=3) - timedelta(seconds=5) < lifetime <= timedelta(days=3)


def test_orphans_are_swept_after_the_grace_period_and_referenced_objects_stay(tenant, settings):
    settings.STORAGE_ORPHAN_GRACE_S = 3600
    job = _with_inputs(_finished_job(tenant))
    leftover = default_storage.save(f"tenants/{tenant.id}/jobs/{job.id}/output-9.wav", ContentFile(b"dead worker's upload"))
    no_job = default_storage.save(f"tenants/{tenant.id}/jobs/{job.id.hex[:8]}-0000-4000-8000-000000000000/output-1.wav", ContentFile(b"x"))
    no_voice = default_storage.save(f"tenants/{tenant.id}/voices/5b0e5a8e-0000-4000-8000-000000000000/prompt.wav", ContentFile(b"x"))
    fresh = default_storage.save(f"tenants/{tenant.id}/voices/6c0e5a8e-0000-4000-8000-000000000000/upload.bin", ContentFile(b"x"))
    voice = VoicePrompt.objects.create(tenant=tenant, name="kept", upload_key="", upload_size_bytes=1)
    voice_file = default_storage.save(f"tenants/{tenant.id}/voices/{voice.id}/upload.bin", ContentFile(b"x"))
    VoicePrompt.objects.filter(id=voice.id).update(upload_key=voice_file)
    for key in (*_keys(job), leftover, no_job, no_voice, voice_file):
        _age(key, 7200)

    dry = jobs_purge(now=timezone.now(), dry_run=True)
    assert sorted(dry.keys) == sorted([leftover, no_job, no_voice]) and default_storage.exists(leftover)

    report = jobs_purge(now=timezone.now())
    assert report.orphans_deleted == 3
    assert not any(default_storage.exists(key) for key in (leftover, no_job, no_voice))
    assert all(default_storage.exists(key) for key in (*_keys(job), fresh, voice_file))


def test_old_deliveries_and_expired_idempotency_records_are_trimmed(tenant, settings):
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 7
    now = timezone.now()

    def delivery(status: str, age_days: float) -> Delivery:
        row = Delivery.objects.create(
            tenant=tenant, url="https://example.com/hook", event_type="job.succeeded", payload={}, status=status, next_attempt_at=now
        )
        Delivery.objects.filter(id=row.id).update(created_at=now - timedelta(days=age_days))
        return row

    old_done, old_failed = delivery("succeeded", 8), delivery("failed", 30)
    recent, pending = delivery("succeeded", 1), delivery("pending", 30)
    IdempotencyRecord.objects.create(tenant_id=tenant.pk, key="old", fingerprint="f", expires_at=now - timedelta(seconds=1))
    IdempotencyRecord.objects.create(tenant_id=tenant.pk, key="live", fingerprint="f", expires_at=now + timedelta(hours=1))

    out = StringIO()
    call_command("purge_expired", stdout=out)  # the webhooks and core apps' purge steps

    assert "deleted 2 webhook deliveries" in out.getvalue() and "deleted 1 idempotency records" in out.getvalue()
    assert set(Delivery.objects.values_list("id", flat=True)) == {recent.id, pending.id}
    assert not Delivery.objects.filter(id__in=[old_done.id, old_failed.id]).exists()
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["live"]


def test_a_run_that_died_half_way_is_finished_by_the_next(tenant):
    job = _with_inputs(_finished_job(tenant))
    _expire(job)
    # A previous run claimed the job and died before deleting anything.
    Job.objects.filter(id=job.id).update(status="expired", stage="purging")
    report = jobs_purge(now=timezone.now())
    job.refresh_from_db()
    assert job.stage == "expired" and report.objects_deleted == 3
    assert not any(default_storage.exists(key) for key in (job.result_key, *report.keys))


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_expire_each_job_once_and_delete_everything(tenant):
    jobs = [_with_inputs(_finished_job(tenant, text=f"Job number {index}.")) for index in range(24)]
    Job.objects.filter(id__in=[job.id for job in jobs]).update(result_expires_at=timezone.now() - timedelta(seconds=1))
    reports, errors = [], []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            start.wait()
            reports.append(jobs_purge(now=timezone.now(), batch_size=5, orphans=False))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(report.jobs_expired for report in reports) == 24  # each claimed by exactly one run
    assert sum(report.errors for report in reports) == 0
    assert Job.objects.filter(status="expired", stage="expired").count() == 24
    assert not any(default_storage.exists(key) for job in jobs for key in _keys(job))
