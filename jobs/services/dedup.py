"""Identical requests: a finished job's output is reused at once (a cache
hit); a job still being made is joined, and its followers end as it does."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

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
    now = timezone.now()
    finished = Q(status=Status.SUCCEEDED, result_expires_at__gt=now + timedelta(seconds=settings.DEDUP_MIN_RESULT_LIFETIME_S))
    in_progress = Q(status__in=Job.ACTIVE, dedup_of__isnull=True)
    if priority == Job.Priority.HIGH:
        in_progress &= Q(priority=Job.Priority.HIGH)
    candidates = list(Job.objects.filter(finished | in_progress, tenant=tenant, dedup_key=dedup_key).order_by("-created_at")[:20])
    succeeded = [job for job in candidates if job.status == Status.SUCCEEDED]
    preferred = succeeded or candidates
    return preferred[0] if preferred else None


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
