"""The repair sweep's steps for jobs (run every minute by ``manage.py
repair``): messages that never reached Redis or were lost, jobs whose worker
died, and jobs past their time limit."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from jobs.models import Job
from jobs.services.announce import job_announce
from jobs.services.dedup import followers_finish
from jobs.services.dispatch import job_resend, jobs_dispatch
from jobs.services.run import job_failure_settle

logger = logging.getLogger(__name__)
Status = Job.Status


def jobs_resend_unsent(*, older_than_s: float = 10.0) -> int:
    """Send queued jobs whose message never reached Redis, and re-send queued
    jobs sent long ago whose message may have been lost since (dead-lettered
    after database errors, or cut from Redis's last second of append-only
    log). Claims are idempotent, so a duplicate message is harmless;
    ``enqueued_at`` is refreshed on each send so a job is re-sent at most once
    per period."""
    now = timezone.now()
    waiting = Job.objects.filter(
        status=Status.QUEUED, enqueued_at__isnull=True, dedup_of__isnull=True, created_at__lt=now - timedelta(seconds=older_than_s)
    )
    tenant_ids = waiting.order_by().values_list("tenant_id", flat=True).distinct()[:1000]
    sent = sum(jobs_dispatch(tenant_id=tenant_id) for tenant_id in tenant_ids)
    lost = Job.objects.filter(status=Status.QUEUED, enqueued_at__lt=now - timedelta(seconds=settings.JOB_RESEND_QUEUED_AFTER_S))
    sent += sum(job_resend(job_id=job_id) for job_id in lost.values_list("id", flat=True)[:1000])
    # Jobs that joined an identical job which ended before they were saved.
    orphaned = Job.objects.filter(status=Status.QUEUED, dedup_of__status__in=Job.TERMINAL).values_list("dedup_of_id", flat=True)
    for source_id in set(orphaned[:1000]):
        followers_finish(Job.objects.get(id=source_id))
    return sent


def jobs_resend_abandoned() -> int:
    """Re-send running jobs whose heartbeat stopped (a dead worker): the next
    claim takes the stale job over."""
    stale_before = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S)
    # Sent again at most once per heartbeat timeout (job_resend stamps enqueued_at).
    abandoned = Job.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale_before).filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale_before)
    )
    job_ids = list(abandoned.values_list("id", flat=True)[:1000])
    for job_id in job_ids:
        job_resend(job_id=job_id)
    close_old_connections()
    return len(job_ids)


def jobs_stop_overdue() -> int:
    """Running jobs past their time limit although their worker still beats
    (an engine stuck in native code, where Dramatiq's time limit cannot
    interrupt it) end by the same policy as a time limit hit in the worker:
    retried while attempts remain, else failed. The stuck run no longer owns
    the job, so it stops at its next progress point and can never store a
    result."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_TIME_LIMIT_S + settings.JOB_OVERDUE_GRACE_S)
    message = f"The job exceeded its time limit of {settings.JOB_TIME_LIMIT_S} s."
    stopped = 0
    for job_id, attempts in Job.objects.filter(status=Status.RUNNING, started_at__lt=cutoff).values_list("id", "attempts")[:1000]:
        owned = Job.objects.filter(id=job_id, status=Status.RUNNING, attempts=attempts, started_at__lt=cutoff)
        settled = job_failure_settle(owned, attempts=attempts, code="time_limit_exceeded", message=message)
        if settled is None:
            continue
        stopped += 1
        logger.warning("job over its time limit; stopped", extra={"job_id": str(job_id), "attempt": attempts})
        if settled == "retrying":
            job_resend(job_id=job_id)
        job_announce(job_id)
        if settled == "failed":
            job = Job.objects.get(id=job_id)
            followers_finish(job)
            jobs_dispatch(tenant_id=job.tenant_id)
    return stopped
