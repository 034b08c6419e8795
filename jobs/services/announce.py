"""Telling the world a job changed: its live event stream (SSE) and its
webhooks. Best effort: the job's row is the record, so nothing here may fail
the job."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from core import metrics
from jobs import events
from jobs.models import Job
from jobs.representation import job_representation
from webhooks.services import event_publish

logger = logging.getLogger(__name__)
Status = Job.Status

_WEBHOOK_EVENT_BY_STATUS: dict[str, str] = {
    Status.RUNNING: "job.started",
    Status.SUCCEEDED: "job.succeeded",
    Status.FAILED: "job.failed",
    Status.CANCELED: "job.canceled",
}
# When each running job last sent a job.progress webhook (this process runs it).
_progress_webhook_sent: dict[Any, float] = {}


def job_announce(job: Job | Any, *, fresh: bool = False) -> None:
    """Tell live streams and webhooks that the job changed status. ``job`` is
    a Job or its id. Reads the row again unless ``fresh``: the caller's UPDATE
    made its copy stale."""
    try:
        if not fresh:
            job = Job.objects.select_related("tenant").get(id=getattr(job, "id", job))
        body = job_representation(job)
        if job.is_terminal:
            metrics.increment(metrics.jobs_finished, kind=job.kind, status=job.status, error_code=job.error_code)
        events.job_event_append(job_id=job.id, event=events.DONE if job.is_terminal else events.STATUS, data=body)
        event_type = _WEBHOOK_EVENT_BY_STATUS.get(job.status)
        if event_type:
            event_publish(
                tenant=job.tenant,
                event_type=event_type,
                data=body,
                job=job,
                job_webhook_url=job.webhook_url,
                job_webhook_events=job.webhook_events,
            )
    except Exception:  # a database hiccup must not turn a finished job into a retry
        logger.warning("could not announce a job event", exc_info=True)


def job_announce_progress(job: Job) -> None:
    """A progress event on the stream; a ``job.progress`` webhook at most
    every WEBHOOK_PROGRESS_INTERVAL_S."""
    events.job_event_append(
        job_id=job.id, event=events.PROGRESS, data={"id": str(job.id), "status": job.status, "progress": job.progress, "stage": job.stage}
    )
    now = time.monotonic()
    last_sent = _progress_webhook_sent.get(job.id)
    if last_sent is not None and now - last_sent < settings.WEBHOOK_PROGRESS_INTERVAL_S:
        return
    _progress_webhook_sent[job.id] = now
    try:
        event_publish(
            tenant=job.tenant,
            event_type="job.progress",
            data=job_representation(job),
            job=job,
            job_webhook_url=job.webhook_url,
            job_webhook_events=job.webhook_events,
        )
    except Exception:
        logger.warning("could not publish a progress webhook", exc_info=True)


def job_progress_announcements_end(job: Job) -> None:
    """The run is over: forget when it last sent a progress webhook."""
    _progress_webhook_sent.pop(job.id, None)
