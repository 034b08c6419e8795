"""Quotas and usage: active-job and monthly-seconds limits, the usage report."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.models import Job
from tenants.models import Tenant

TTS = "/v1/tts"
# Submissions dispatch on commit: these tests need real commits.
pytestmark = pytest.mark.django_db(transaction=True)


def test_too_many_active_jobs_is_429(api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_active_jobs=2)
    for index in range(2):
        assert api.post(TTS, {"text": f"job {index}", "engine": "tone"}, format="json").status_code == 202
    refused = api.post(TTS, {"text": "one too many", "engine": "tone"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_active_jobs"
    assert refused.json()["error"]["details"] == {"active_jobs": 2, "limit": 2}
    assert refused["Retry-After"] == "5"  # no history yet: the default
    assert Job.objects.filter(tenant=tenant).count() == 2


def test_too_many_active_jobs_retry_after_follows_the_tenants_run_times(api, tenant, other_tenant, stub_broker):
    """Retry-After is when a slot is likely to free: the median run time of the
    tenant's recent jobs, less how long its oldest running job has run."""
    from datetime import timedelta

    from django.utils import timezone

    Tenant.objects.filter(pk=tenant.pk).update(max_active_jobs=1)
    now = timezone.now()
    for tenant_, seconds in [(tenant, 10), (tenant, 12), (tenant, 40), (other_tenant, 3)] * 2:
        job = services.job_submit_tts(tenant=tenant_, api_key=None, params=_params(), metadata={}, actor="t", ip=None, use_cache=False)
        Job.objects.filter(id=job.id).update(
            status=Job.Status.SUCCEEDED, started_at=now - timedelta(seconds=seconds + 60), finished_at=now - timedelta(seconds=60)
        )
    queued = api.post(TTS, {"text": "waiting", "engine": "tone"}, format="json")
    assert queued.status_code == 202
    refused = api.post(TTS, {"text": "one too many", "engine": "tone"}, format="json")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "12"  # the median of 10, 12, 40 (not the other tenant's 3)
    Job.objects.filter(id=queued.json()["id"]).update(status=Job.Status.RUNNING, started_at=now - timedelta(seconds=5))
    refused = api.post(TTS, {"text": "one too many", "engine": "tone"}, format="json")
    assert 1 <= int(refused["Retry-After"]) <= 7  # 12 s typical, 5 s of it already spent
    Job.objects.filter(id=queued.json()["id"]).update(started_at=now - timedelta(seconds=600))
    refused = api.post(TTS, {"text": "one too many", "engine": "tone"}, format="json")
    assert refused["Retry-After"] == "1"  # overdue: a slot may free any moment


def _params():
    from jobs.services import TtsParams

    return TtsParams(text="earlier", language="en", engine="tone", format="wav", speed=1.0)


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


def test_usage_counts_the_jobs_of_this_month_only(api, tenant):
    """The month is a UTC range: its first microsecond is in, the last of the
    previous month is out."""
    from datetime import UTC, datetime, timedelta

    from django.utils import timezone

    now = timezone.now()
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    for created_at in (month_start, month_start - timedelta(microseconds=1), month_start - timedelta(days=40)):
        job = services.job_submit_tts(tenant=tenant, api_key=None, params=_params(), metadata={}, actor="t", ip=None, use_cache=False)
        Job.objects.filter(id=job.id).update(created_at=created_at)
    usage = api.get("/v1/usage").json()
    assert usage["jobs"]["queued"] == 1
    assert usage["active_jobs"] == 3  # active is active, whatever the month
