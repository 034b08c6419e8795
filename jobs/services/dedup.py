"""Identical requests: a finished job's output is reused at once (a cache
hit); a job still being made is joined, and its followers end as it does."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.rows import quoted, quoted_column
from jobs.models import Job
from jobs.services.announce import job_announce
from jobs.services.dispatch import jobs_dispatch
from tenants.models import Tenant
from tenants.services import usage_record

Status = Job.Status


def dedup_key(*, tenant: Tenant, kind: str, engine: str, inputs: dict[str, Any]) -> str:
    """Identical requests hash alike: text is compared with its whitespace
    collapsed (it is already NFC), everything else exactly."""
    normalized = {**inputs, "text": " ".join(str(inputs.get("text", "")).split())}
    material = json.dumps({"tenant": str(tenant.pk), "kind": kind, "engine": engine, "inputs": normalized}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def dedup_source(*, tenant: Tenant, dedup_key: str, priority: str) -> Job | None:
    """A finished job whose output is kept for a while yet, else a job still
    being made (not itself waiting on another, and not of lower priority:
    a high-priority request must not wait behind a normal backlog)."""
    kept_past = timezone.now() + timedelta(seconds=settings.DEDUP_MIN_RESULT_LIFETIME_S)
    candidates = _dedup_candidates(tenant_id=tenant.pk, dedup_key=dedup_key, high_only=priority == Job.Priority.HIGH, kept_past=kept_past)
    succeeded = [job_id for job_id, status in candidates if status == Status.SUCCEEDED]
    preferred = succeeded or [job_id for job_id, _ in candidates]
    return Job.objects.filter(id=preferred[0]).first() if preferred else None


def _dedup_candidates(*, tenant_id: Any, dedup_key: str, high_only: bool, kept_past: datetime) -> list[tuple[uuid.UUID, str]]:
    """(id, status) of the tenant's jobs with this key that may serve, newest
    first. Every submission asks this, and almost always finds nothing: in
    plain SQL, as the ORM spent more compiling this OR filter (~15 % of a
    submission's CPU, profiled) than the database spent answering it. Served
    by the job_tenant_dedup index."""
    fields = Job._meta
    params: list[Any] = [
        fields.get_field("tenant").get_db_prep_value(tenant_id, connection),
        dedup_key,
        Status.SUCCEEDED,
        fields.get_field("result_expires_at").get_db_prep_value(kept_past, connection),
        *Job.ACTIVE,
    ]
    if high_only:
        params.append(Job.Priority.HIGH)
    with connection.cursor() as cursor:
        cursor.execute(_dedup_candidates_sql(connection.vendor, high_only=high_only), params)
        rows = cursor.fetchall()
    return [(job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id), status) for job_id, status in rows]


@functools.cache
def _dedup_candidates_sql(vendor: str, *, high_only: bool) -> str:
    """The query of _dedup_candidates, built once per database vendor (its
    quoting) and variant: not on every submission."""
    column = {
        name: quoted_column(Job, name)
        for name in ("id", "status", "tenant", "dedup_key", "result_expires_at", "dedup_of", "priority", "created_at")
    }
    high = f" AND {column['priority']} = %s" if high_only else ""
    return (
        f"SELECT {column['id']}, {column['status']} FROM {quoted(Job._meta.db_table)}"
        f" WHERE {column['tenant']} = %s AND {column['dedup_key']} = %s"
        f" AND (({column['status']} = %s AND {column['result_expires_at']} > %s)"
        f" OR ({column['status']} IN (%s, %s) AND {column['dedup_of']} IS NULL{high}))"
        f" ORDER BY {column['created_at']} DESC LIMIT 20"
    )


def copied_result(source: Job) -> dict[str, Any]:
    """A finished job's output, for another job: the same stored object, no copy."""
    now = timezone.now()
    return {
        "status": Status.SUCCEEDED,
        "progress": 100,
        "stage": "done",
        "started_at": now,
        "finished_at": now,
        "result_key": source.result_key,
        "result_content_type": source.result_content_type,
        "result_duration_s": source.result_duration_s,
        "result_size_bytes": source.result_size_bytes,
        "result_expires_at": source.result_expires_at,
        "result_info": source.result_info,
        "result_files": source.result_files,
    }


def followers_finish(source: Job) -> None:
    """The jobs that joined ``source`` end as it did: with its output, with its
    error, or (if it was canceled) they are dispatched to run themselves."""
    source.refresh_from_db()
    followers = list(Job.objects.filter(dedup_of=source, status=Status.QUEUED))
    if not followers:
        return
    if source.status == Status.SUCCEEDED:
        Job.objects.filter(id__in=[f.id for f in followers], status=Status.QUEUED).update(**copied_result(source))
        usage_record(tenant_id=source.tenant_id, cache_hits=len(followers))
    elif source.status == Status.FAILED:
        Job.objects.filter(id__in=[f.id for f in followers], status=Status.QUEUED).update(
            status=Status.FAILED,
            stage="failed",
            finished_at=timezone.now(),
            error_code=source.error_code,
            error_message=source.error_message,
        )
    else:  # canceled or expired: the first follower runs, the others wait on it
        leader, *rest = sorted(followers, key=lambda follower: follower.created_at)
        Job.objects.filter(id=leader.id, status=Status.QUEUED).update(dedup_of=None, cache_hit=False)
        Job.objects.filter(id__in=[f.id for f in rest], status=Status.QUEUED).update(dedup_of=leader)
        jobs_dispatch(tenant_id=source.tenant_id)
        return
    for follower in followers:
        job_announce(follower.id)
