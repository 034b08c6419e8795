"""owned_row_or_404 (core/lookups.py): the plain-SQL lookup of the hottest
reads gives the same object the ORM gives, and the same 404s."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import NotFound
from core.lookups import owned_or_404, owned_row_or_404
from jobs.models import Job
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def _finished_job(tenant: Tenant) -> Job:
    now = timezone.now()
    source = Job.objects.create(tenant=tenant, kind=Job.Kind.TTS, engine="tone", input={"text": "first"})
    return Job.objects.create(
        tenant=tenant,
        kind=Job.Kind.TTS,
        engine="tone",
        input={"text": "Grüße, 世界", "speed": 1.25, "nested": {"list": [1, None, True]}},
        metadata={"order": 42, "tags": ["a", "b"]},
        webhook_events=["job.succeeded"],
        dedup_key="k" * 64,
        dedup_of=source,
        cache_hit=True,
        cost=2.5,
        status=Job.Status.SUCCEEDED,
        progress=100,
        stage="done",
        attempts=1,
        result_key="tenants/x/jobs/y/result.wav",
        result_content_type="audio/wav",
        result_duration_s=1.234,
        result_size_bytes=12345,
        result_expires_at=now + timedelta(days=30),
        result_info={"sample_rate": 24000},
        result_files={"srt": "tenants/x/jobs/y/result.srt"},
        enqueued_at=now,
        started_at=now,
        finished_at=now + timedelta(seconds=1),
        heartbeat_at=now,
    )


def test_the_row_is_the_object_the_orm_gives(tenant):
    job = _finished_job(tenant)
    by_orm = owned_or_404(Job.objects.all(), tenant=tenant, object_id=str(job.id), what="Job")
    by_sql = owned_row_or_404(Job, tenant=tenant, object_id=str(job.id), what="Job")
    for field in Job._meta.concrete_fields:
        orm_value, sql_value = getattr(by_orm, field.attname), getattr(by_sql, field.attname)
        assert sql_value == orm_value, field.name
        assert type(sql_value) is type(orm_value), field.name
    assert by_sql.created_at.tzinfo is not None
    assert by_sql._state.adding is False and by_sql._state.db == "default"
    by_sql.progress = 99  # and it saves as a fetched object does
    by_sql.save(update_fields=["progress"])
    assert Job.objects.get(id=job.id).progress == 99


def test_another_tenants_row_a_missing_one_and_a_malformed_id_are_404(tenant):
    job = _finished_job(tenant)
    other = Tenant.objects.create(slug="other")
    for owner, object_id in ((other, str(job.id)), (tenant, str(uuid.uuid4())), (tenant, "not-a-uuid"), (tenant, "")):
        with pytest.raises(NotFound, match="Job not found"):
            owned_row_or_404(Job, tenant=owner, object_id=object_id, what="Job")
