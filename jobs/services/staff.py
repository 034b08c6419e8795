"""Changing a job by hand: the client's cancel, and staff's rerun and requeue
(admin actions). Each is audited.

Words: *rerun* starts a finished (failed or canceled) job again with fresh
attempts; *requeue* puts an active job back in its queue."""

from __future__ import annotations

from django.utils import timezone

from audit.services import audit_record
from core.errors import ApplicationError
from jobs.models import Job
from jobs.services.announce import job_announce
from jobs.services.dedup import followers_finish
from jobs.services.dispatch import job_resend, jobs_dispatch

Status = Job.Status


def job_cancel(*, job: Job, actor: str, ip: str | None) -> Job:
    """Queued jobs never start; a running job stops at its next progress
    point (its worker no longer owns the row) and cleans its temp files."""
    canceled = Job.objects.filter(id=job.id, status__in=Job.ACTIVE).update(
        status=Status.CANCELED, stage="canceled", finished_at=timezone.now()
    )
    job.refresh_from_db()
    if not canceled:
        raise ApplicationError(
            "job_not_cancelable",
            f"The job is {job.status}; only queued or running jobs can be canceled.",
            status=409,
            details={"status": job.status},
        )
    audit_record(action="job.cancel", actor=actor, tenant=job.tenant, target=job, ip=ip)
    job_announce(job)
    followers_finish(job)  # jobs that joined it run on their own now
    jobs_dispatch(tenant_id=job.tenant_id)  # a queued job in flight freed a slot
    return job


def job_rerun(*, job: Job, actor: str, ip: str | None = None) -> Job:
    """Staff: run a failed or canceled job again from the start (a fresh
    set of attempts, its uploads if retention has not removed them)."""
    rerun = Job.objects.filter(id=job.id, status__in=[Status.FAILED, Status.CANCELED]).update(
        status=Status.QUEUED,
        stage="queued",
        progress=0,
        attempts=0,
        error_code="",
        error_message="",
        enqueued_at=None,
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
        dedup_of=None,
    )
    job.refresh_from_db()
    if not rerun:
        raise ApplicationError("job_not_rerunnable", f"The job is {job.status}; only failed or canceled jobs can be run again.", status=409)
    audit_record(action="job.rerun", actor=actor, tenant=job.tenant, target=job, ip=ip)
    job_announce(job)
    jobs_dispatch(tenant_id=job.tenant_id)
    return job


def job_requeue(*, job: Job, actor: str, ip: str | None = None) -> Job:
    """Staff: put a stuck job back in its queue. A running job is taken from
    its worker (which stops at its next progress point and cannot store a
    result); a queued job's message is sent again (a duplicate is harmless:
    only one claim wins)."""
    if job.status == Status.RUNNING:
        moved = Job.objects.filter(id=job.id, status=Status.RUNNING, attempts=job.attempts).update(
            status=Status.QUEUED, stage="requeued", progress=0
        )
    else:
        moved = Job.objects.filter(id=job.id, status=Status.QUEUED).count()
    job.refresh_from_db()
    if not moved:
        raise ApplicationError("job_not_requeueable", f"The job is {job.status}; only queued or running jobs can be requeued.", status=409)
    audit_record(action="job.requeue", actor=actor, tenant=job.tenant, target=job, ip=ip)
    if job.enqueued_at is None:
        jobs_dispatch(tenant_id=job.tenant_id)  # waiting its fair-share turn
    else:
        job_resend(job_id=job.id)
    job_announce(job)
    job.refresh_from_db()
    return job
