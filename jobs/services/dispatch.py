"""Fair share and sending: a tenant's waiting jobs go to the broker while it
has room, so one tenant's burst sits in the database, not in front of
everyone else in the queue. Room is counted two ways: at most
``max_in_flight`` jobs in the broker or running, and, per kind of job (each
kind has its own queues and workers), at most ``max_in_flight_cost`` of
estimated work (``Job.cost``, seconds of speech; a talking-head second weighs
TALKING_HEAD_COST_PER_SECOND). One 30-minute text fills a tenant's share as
a 2-second sentence does not; a job larger than the share runs alone.

Words: *dispatch* releases waiting jobs (fair share); *send* puts one job's
message on its queue; *resend* sends again a job already in flight (a message
presumed lost, a dead worker's job)."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Count, Sum
from django.utils import timezone

from jobs.models import Job
from jobs.routing import job_message_send, job_route
from tenants.limits import TenantLimits, tenant_limits
from tenants.models import Tenant

logger = logging.getLogger(__name__)
Status = Job.Status


def jobs_dispatch(*, tenant_id: Any, limits: TenantLimits | None = None) -> int:
    """Hand the tenant's waiting jobs to the broker, high priority and older
    first, within its share. Called after a submit, when a job ends, and by
    the repair sweep. Returns how many were sent.

    Within a kind the order is kept: a job that does not fit waits for
    room, and the jobs behind it wait with it (a large job is never
    overtaken for good by smaller ones)."""
    if limits is None:
        limits = tenant_limits(Tenant.objects.get(pk=tenant_id))
    in_flight = {
        kind: (count, cost or 0.0)
        for kind, count, cost in Job.objects.filter(tenant_id=tenant_id, status__in=Job.ACTIVE, enqueued_at__isnull=False)
        .order_by()
        .values("kind")
        .annotate(count=Count("id"), cost=Sum("cost"))
        .values_list("kind", "count", "cost")
    }
    free = limits.max_in_flight - sum(count for count, _ in in_flight.values())
    if free <= 0:
        return 0
    waiting = Job.objects.filter(tenant_id=tenant_id, status=Status.QUEUED, enqueued_at__isnull=True, dedup_of__isnull=True)
    releasable: list[tuple[Any, ...]] = []
    for kind in Job.Kind.values:
        count, cost = in_flight.get(kind, (0, 0.0))
        rows = waiting.filter(kind=kind).order_by("priority", "created_at")
        for row in rows.values_list("id", "priority", "kind", "input__resolution", "cost", "created_at")[:free]:
            if count and cost + row[4] > limits.max_in_flight_cost:
                break  # no room for this one yet: it and those behind it wait
            releasable.append(row)
            count, cost = count + 1, cost + row[4]
    releasable.sort(key=lambda row: (row[1], row[5]))  # "high" < "normal", then oldest
    sent = 0
    for job_id, priority, kind, resolution, _cost, _created in releasable[:free]:
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
