"""Fair share and sending: a tenant's waiting jobs go to the broker while
fewer than its ``max_in_flight`` are there or running, so one tenant's burst
sits in the database, not in front of everyone else in the queue.

Words: *dispatch* releases waiting jobs (fair share); *send* puts one job's
message on its queue; *resend* sends again a job already in flight (a message
presumed lost, a dead worker's job)."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from jobs.models import Job
from jobs.routing import job_message_send, job_route
from tenants.limits import tenant_limits
from tenants.models import Tenant

logger = logging.getLogger(__name__)
Status = Job.Status


def jobs_dispatch(*, tenant_id: Any, max_in_flight: int | None = None) -> int:
    """Hand the tenant's waiting jobs to the broker, high priority and older
    first. Called after a submit, when a job ends, and by the repair sweep.
    Returns how many were sent."""
    if max_in_flight is None:
        max_in_flight = tenant_limits(Tenant.objects.get(pk=tenant_id)).max_in_flight
    in_flight = Job.objects.filter(tenant_id=tenant_id, status__in=Job.ACTIVE, enqueued_at__isnull=False).count()
    free = max_in_flight - in_flight
    if free <= 0:
        return 0
    waiting = Job.objects.filter(tenant_id=tenant_id, status=Status.QUEUED, enqueued_at__isnull=True, dedup_of__isnull=True)
    sent = 0
    for job_id, priority, kind, resolution in waiting.order_by("priority", "created_at").values_list(
        "id", "priority", "kind", "input__resolution"
    )[:free]:
        # Mark first (conditionally), so concurrent dispatchers never send one job twice.
        if Job.objects.filter(id=job_id, enqueued_at__isnull=True).update(enqueued_at=timezone.now()):
            if job_send(job_id, route=(kind, priority, resolution)):
                sent += 1
            else:
                Job.objects.filter(id=job_id).update(enqueued_at=None)
                break  # the broker is down: the repair sweep dispatches later
    return sent


def job_send(job_id: Any, *, route: tuple[str, str, int | None] | None = None) -> bool:
    """Put the job's message on its queue; False (logged) if the broker is down."""
    if route is None:  # a re-send: look it up
        route = Job.objects.filter(id=job_id).values_list("kind", "priority", "input__resolution").first()
        if route is None:
            return False
    kind, priority, resolution = route
    try:
        job_message_send(job_route(kind=kind, priority=priority, resolution=resolution), job_id)
    except Exception:  # redis/dramatiq connection errors of every kind
        logger.warning("send failed; the repair sweep will send it", extra={"job_id": str(job_id)}, exc_info=True)
        return False
    return True


def job_resend(*, job_id: Any) -> bool:
    """Send again a job that is already in flight: a message presumed lost,
    or a job whose worker died. If Redis is down nothing changes and the
    repair sweep tries again later: nothing is lost."""
    if not job_send(job_id):
        return False
    Job.objects.filter(id=job_id).update(enqueued_at=timezone.now())
    return True
