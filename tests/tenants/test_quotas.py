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
