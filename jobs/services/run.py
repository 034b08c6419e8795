"""Running a job: claim, one attempt (engine, then storage), and one policy
for how an attempt ends.

Every status change is a conditional UPDATE on the expected current status
(and, while running, on the attempt that owns the job); the row count says
whether this caller won. That makes redelivered messages, concurrent workers
and cancellation safe without locks."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from core import metrics
from core.context import job_id_var
from core.storage import storage_errors
from engines.errors import Canceled, EngineError
from jobs.models import Job
from jobs.services.announce import job_announce, job_progress_announcements_end
from jobs.services.dedup import followers_finish
from jobs.services.dispatch import jobs_dispatch
from jobs.services.files import files_delete, job_output_store
from jobs.services.pipelines import ENGINE_PROGRESS_SHARE, JobOutput, job_make
from jobs.services.progress import job_owned, job_progress
from tenants.limits import tenant_limits
from tenants.services import usage_record

logger = logging.getLogger(__name__)
Status = Job.Status


class JobRetry(Exception):
    """Raised to the actor so Dramatiq delivers the message again, with
    backoff, for the job's next attempt."""


class JobBusy(JobRetry, dramatiq.Retry):
    """The job is running elsewhere, or its worker died so recently that its
    heartbeat is not stale yet. Redelivered when the heartbeat would be stale
    (not on the short retry backoff, whose few retries a dead worker's job
    could use up before it becomes claimable), the message finds the job
    finished (and is dropped) or abandoned (and claims it). A dramatiq.Retry:
    not logged as an error."""

    def __init__(self, job_id: str, *, delay_ms: int | None = None) -> None:
        dramatiq.Retry.__init__(self, job_id, delay=delay_ms)


def job_claim(*, job_id: str) -> Job | None:
    """Move a job to running if it is queued, or running but abandoned (its
    worker's heartbeat stopped). Returns None when another worker has it."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S)
    abandoned = Q(status=Status.RUNNING, heartbeat_at__lt=stale_before)
    claimable = Q(status=Status.QUEUED) | (abandoned & Q(attempts__lt=settings.JOB_MAX_ATTEMPTS))
    claimed = Job.objects.filter(claimable, id=job_id).update(
        status=Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        stage="starting",
        progress=0,
    )
    if claimed:
        job = Job.objects.select_related("tenant").get(id=job_id)
        waited_since = job.enqueued_at or job.created_at
        metrics.observe(metrics.job_queue_wait_seconds, max(0.0, (now - waited_since).total_seconds()), kind=job.kind)
        job_announce(job, fresh=True)
        return job
    _job_fail_if_lost(job_id, abandoned=abandoned, now=now)
    return None


def _job_fail_if_lost(job_id: str, *, abandoned: Q, now: Any) -> None:
    """A job that took its worker down on every attempt (segfault, OOM kill)
    must not be handed to the next worker forever: it fails as worker_lost,
    and ends its followers and frees its slot like any other failure. Only
    looked for here, off the hot path (every UPDATE takes SQLite's write lock)."""
    lost = Job.objects.filter(abandoned, id=job_id, attempts__gte=settings.JOB_MAX_ATTEMPTS).update(
        status=Status.FAILED,
        stage="failed",
        finished_at=now,
        error_code="worker_lost",
        error_message=f"The worker running this job stopped responding on all {settings.JOB_MAX_ATTEMPTS} attempts.",
    )
    if lost:
        job = Job.objects.select_related("tenant").get(id=job_id)
        logger.warning("job failed", extra={"error_code": "worker_lost"})
        job_announce(job, fresh=True)
        _job_finished_bookkeeping(job)
        _after_job(job)


def job_run(*, job_id: str) -> None:
    """Run one job to a terminal state, or hand it back for a retry."""
    job = job_claim(job_id=job_id)
    if job is None:
        heartbeat_at = Job.objects.filter(id=job_id, status=Status.RUNNING).values_list("heartbeat_at", flat=True).first()
        if heartbeat_at is not None:  # every claim sets it
            stale_in_s = (heartbeat_at + timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S) - timezone.now()).total_seconds()
            raise JobBusy(job_id, delay_ms=max(settings.JOB_RETRY_MIN_BACKOFF_MS, int(stale_in_s * 1000) + 500))
        logger.info("job finished or unknown; dropping message", extra={"job_id": job_id})
        return
    token = job_id_var.set(str(job.id))
    try:
        _job_execute(job)
    finally:
        job_id_var.reset(token)
        job_progress_announcements_end(job)
        _after_job(job)


def _after_job(job: Job) -> None:
    """A slot of the tenant is free (unless the job is back for a retry): let
    its next waiting job in. Never raises: the repair sweep dispatches too."""
    try:
        jobs_dispatch(tenant_id=job.tenant_id, limits=tenant_limits(job.tenant))
    except Exception:
        logger.warning("dispatch after the job failed; the repair sweep will", exc_info=True)


def _job_execute(job: Job) -> None:
    elapsed, outcome = metrics.timer(), "retrying"  # JobRetry propagates to the actor
    try:
        outcome = job_attempt(job)
    finally:
        metrics.observe(metrics.engine_run_seconds, elapsed(), kind=job.kind, engine=job.engine, outcome=outcome)


def job_attempt(job: Job) -> str:
    """One attempt: engine, then storage. Returns how it ended: "succeeded",
    "failed", "canceled", or "lost" (this run no longer owned the job, e.g.
    a replaced worker's), or raises JobRetry for another attempt."""
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    try:
        with tempfile.TemporaryDirectory(prefix="mynah-job-") as workdir, _heartbeat(job):
            output = job_make(job, Path(workdir))
            job_progress(job=job, percent=ENGINE_PROGRESS_SHARE + 1, stage="storing")
            _job_store_result(job, output)
        return "succeeded"
    except Canceled:
        logger.info("job canceled while running, or no longer this run's")
        return "canceled"
    except (OperationalError, InterfaceError):
        # The database, not the engine: the message is retried (with backoff)
        # and the job, its heartbeat stale by then, claimed again.
        logger.warning("database unavailable during the job; its message will be retried", exc_info=True)
        raise
    except TimeLimitExceeded:
        return _job_attempt_failed(job, "time_limit_exceeded", f"The job exceeded its time limit of {settings.JOB_TIME_LIMIT_S} s.")
    except EngineError as exc:
        return _job_attempt_failed(job, exc.code, exc.message, permanent=exc.permanent)
    except storage_errors() as exc:
        logger.warning("storage or filesystem error", exc_info=True)
        return _job_attempt_failed(job, "storage_unavailable", f"Storage failed: {getattr(exc, 'strerror', None) or exc}")
    except Exception as exc:
        logger.exception("engine raised an unexpected error")
        return _job_attempt_failed(job, "engine_error", f"The engine failed: {type(exc).__name__}")


def job_failure_settle(owned: QuerySet[Job], *, attempts: int, code: str, message: str, permanent: bool = False) -> str | None:
    """The one policy for a failed attempt, for workers and the repair sweep
    alike: a permanent error, or a transient one on the last attempt, fails
    the job; a transient one (engine server down, storage outage, a time
    limit) sends it back to the queue for another attempt. Writes through
    ``owned`` (the caller's conditional filter) and returns "failed",
    "retrying", or None when the caller no longer owned the job."""
    if permanent or attempts >= settings.JOB_MAX_ATTEMPTS:
        if not permanent:
            message = f"{message} (gave up after {attempts} attempts)"
        failed = owned.update(
            status=Status.FAILED, stage="failed", finished_at=timezone.now(), error_code=code, error_message=message[:2000]
        )
        return "failed" if failed else None
    requeued = owned.update(status=Status.QUEUED, stage="retrying", error_code=code, error_message=message[:2000])
    return "retrying" if requeued else None


def _job_attempt_failed(job: Job, code: str, message: str, *, permanent: bool = False) -> str:
    settled = job_failure_settle(job_owned(job), attempts=job.attempts, code=code, message=message, permanent=permanent)
    if settled is None:  # canceled or taken over meanwhile: not this run's to report
        logger.info("attempt ended after the job was taken from this run", extra={"error_code": code})
        return "lost"
    job_announce(job)
    if settled == "failed":
        logger.warning("job failed", extra={"error_code": code})
        _job_finished_bookkeeping(job)
        return "failed"
    logger.warning("transient failure; retrying", extra={"error_code": code, "attempt": job.attempts})
    raise JobRetry(code)


def _job_finished_bookkeeping(job: Job) -> None:
    """After a failure: the jobs that joined this one end as it did. Never
    raises (the repair sweep finishes them)."""
    try:
        followers_finish(job)
    except Exception:
        logger.exception("could not finish the jobs waiting on this one")


def _job_store_result(job: Job, output: JobOutput) -> None:
    stored: list[str] = []
    try:
        main_key = job_output_store(job, "output", output.path, stored)
        result_files = {
            role: {
                "key": job_output_store(job, role, extra.path, stored),
                "content_type": extra.content_type,
                "duration_s": extra.duration_s,
                "size_bytes": extra.size_bytes,
                **extra.info,
            }
            for role, extra in output.extra.items()
        }
    except BaseException:
        files_delete(stored)
        raise
    now = timezone.now()
    finished = job_owned(job).update(
        status=Status.SUCCEEDED,
        progress=100,
        stage="done",
        finished_at=now,
        heartbeat_at=now,
        error_code="",
        error_message="",
        result_key=main_key,
        result_content_type=output.content_type,
        result_duration_s=output.duration_s,
        result_size_bytes=output.size_bytes,
        result_expires_at=now + timedelta(days=tenant_limits(job.tenant).result_retention_days),
        result_info=output.info,
        result_files=result_files,
    )
    if not finished:  # canceled or taken over while storing: no orphan objects
        files_delete(stored)
        raise Canceled(str(job.id))
    job_announce(job)
    try:  # the job has succeeded: nothing below may turn it into a retry
        if job.kind == Job.Kind.TALKING_HEAD:
            usage_record(tenant_id=job.tenant_id, video_seconds=output.duration_s, jobs=1)
        else:
            usage_record(tenant_id=job.tenant_id, audio_seconds=output.duration_s, jobs=1)
        followers_finish(job)
    except Exception:  # followers: the repair sweep finishes them; usage: logged
        logger.exception("bookkeeping after success failed")
    logger.info("job succeeded", extra={"duration_s": output.duration_s, "size_bytes": output.size_bytes})


@contextmanager
def _heartbeat(job: Job) -> Iterator[None]:
    """Refresh ``heartbeat_at`` in the background while the job runs, so a job
    whose worker died is recognizable even during a long engine call."""
    stop = threading.Event()
    interval = max(1.0, settings.JOB_HEARTBEAT_TIMEOUT_S / 4)

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    job_owned(job).update(heartbeat_at=timezone.now())
                except Exception:  # e.g. "database is locked": try again next beat
                    logger.warning("heartbeat write failed", exc_info=True)
                    connection.close()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
