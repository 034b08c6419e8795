"""A run's hold on its job. The claimed job's ``attempts`` is the run's
ownership token: every write of the run filters on it, so a worker that was
presumed dead (and replaced), or whose job was canceled, can no longer touch
the job, and stops at its next progress point."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet
from django.utils import timezone

from engines.errors import Canceled
from jobs.models import Job
from jobs.services.announce import job_announce_progress

ProgressReport = Callable[[int, str], None]


def job_owned(job: Job) -> QuerySet[Job]:
    """The job's row, if this run still owns it (running, same attempt)."""
    return Job.objects.filter(id=job.id, status=Job.Status.RUNNING, attempts=job.attempts)


def job_progress(*, job: Job, percent: int, stage: str) -> None:
    """Record progress (and a heartbeat). Raises Canceled when this run no
    longer owns the job (canceled, or taken over), which stops the engine at
    its next progress point."""
    percent = max(0, min(percent, 99))
    stage = stage[: Job._meta.get_field("stage").max_length]  # engines word their own stages
    updated = job_owned(job).update(progress=percent, stage=stage, heartbeat_at=timezone.now())
    if not updated:
        raise Canceled(str(job.id))
    job.progress, job.stage = percent, stage
    job_announce_progress(job)


def progress_between(job: Job, low: int, high: int) -> ProgressReport:
    """A progress callback for one stage: the engine's 0-100 % mapped into low..high."""

    def report(percent: int, stage: str) -> None:
        job_progress(job=job, percent=low + (high - low) * max(0, min(percent, 100)) // 100, stage=stage)

    return report
