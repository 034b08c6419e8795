"""Priorities (their own queue, by permission) and fair share (a tenant's burst waits in the database)."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.models import Job
from jobs.services import dispatch as dispatch_module
from tenants.models import Tenant
from tests.support.broker import queued_job_ids

TTS = "/v1/tts"
# Submissions dispatch on commit: these tests need real commits.
pytestmark = pytest.mark.django_db(transaction=True)


def test_high_priority_needs_permission_and_uses_its_own_queue(api, tenant, stub_broker):
    refused = api.post(TTS, {"text": "urgent", "engine": "tone", "priority": "high"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "priority_not_allowed"
    Tenant.objects.filter(pk=tenant.pk).update(allow_high_priority=True)
    accepted = api.post(TTS, {"text": "urgent", "engine": "tone", "priority": "high"}, format="json")
    assert accepted.status_code == 202 and accepted.json()["priority"] == "high"
    assert queued_job_ids(stub_broker, "tts-high") == [accepted.json()["id"]]
    assert queued_job_ids(stub_broker, "tts") == []


def test_a_tenants_burst_waits_in_the_database_not_in_the_queue(api, other_api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight=3, allow_high_priority=True)
    burst = [api.post(TTS, {"text": f"burst {i}", "engine": "tone"}, format="json").json()["id"] for i in range(20)]
    assert queued_job_ids(stub_broker, "tts") == burst[:3]
    other = other_api.post(TTS, {"text": "another tenant", "engine": "tone"}, format="json").json()["id"]
    assert queued_job_ids(stub_broker, "tts") == [*burst[:3], other]  # behind 3, not 20
    urgent = api.post(TTS, {"text": "urgent", "engine": "tone", "priority": "high"}, format="json").json()["id"]
    services.job_run(job_id=burst[0])  # a slot frees: the high-priority job goes first
    assert queued_job_ids(stub_broker, "tts-high") == [urgent]
    services.job_run(job_id=urgent)
    assert queued_job_ids(stub_broker, "tts")[-1] == burst[3]


def test_the_reaper_dispatches_within_the_fair_share(tenant, stub_broker, monkeypatch):
    from jobs.services import TtsParams

    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight=2)
    monkeypatch.setattr(dispatch_module, "job_send", lambda job_id, route=None: False)  # Redis down at submit
    params = [TtsParams(text=f"t{i}", language="en", engine="tone", format="wav", speed=1.0) for i in range(5)]
    for item in params:
        services.job_submit_tts(tenant=tenant, api_key=None, params=item, metadata={}, actor="t", ip=None)
    assert Job.objects.filter(enqueued_at__isnull=False).count() == 0
    monkeypatch.undo()
    assert services.jobs_resend_unsent(older_than_s=0) == 2
    assert len(queued_job_ids(stub_broker, "tts")) == 2
