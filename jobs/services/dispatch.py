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

import atexit
import logging
import os
import queue
import threading
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from core.locks import named_lock_in_transaction
from jobs.models import Job
from jobs.routing import job_message_send, job_route
from tenants.limits import TenantLimits, tenant_limits
from tenants.models import Tenant

logger = logging.getLogger(__name__)
Status = Job.Status


def jobs_dispatch(*, tenant_id: Any, limits: TenantLimits | None = None) -> int:
    """Hand the tenant's waiting jobs to the broker, high priority and older
    first, within its share. Called after a submit (jobs_dispatch_soon), when
    a job ends, and by the repair sweep. Returns how many were sent.

    Within a kind the order is kept: a job that does not fit waits for
    room, and the jobs behind it wait with it (a large job is never
    overtaken for good by smaller ones)."""
    if limits is None:
        limits = tenant_limits(Tenant.objects.get(pk=tenant_id))
    # First a look without the tenant's turn: under a backlog the share is
    # usually full, and then nothing is written. Skipping the turn is safe:
    # every caller looks after its own change committed (a new job, a job
    # that ended), and whatever changes the answer later (a slot freed, a job
    # added) dispatches again after its own commit. On SQLite the turn is a
    # write transaction, the database's one writer lock: these looks held it
    # for a fifth of the time under a burst of submissions (measured).
    if not _releasable(tenant_id=tenant_id, limits=limits):
        return 0
    marked_at = timezone.now()
    with transaction.atomic():
        # One dispatcher per tenant at a time, to its commit, so the in-flight
        # count it reads stays true until its marks are visible.
        named_lock_in_transaction(f"dispatch:{tenant_id}")
        releasable = _releasable(tenant_id=tenant_id, limits=limits)
        # Marked in one statement; within the turn no other dispatcher can
        # have marked them meanwhile, so each job is sent once.
        Job.objects.filter(id__in=[row[0] for row in releasable]).update(enqueued_at=marked_at)
    for index, (job_id, priority, kind, resolution, _cost, _created) in enumerate(releasable):
        if not job_send(job_id, route=(kind, priority, resolution)):
            unsent = [row[0] for row in releasable[index:]]
            Job.objects.filter(id__in=unsent, enqueued_at=marked_at).update(enqueued_at=None)
            return index  # the broker is down: the repair sweep dispatches later
    return len(releasable)


def _releasable(*, tenant_id: Any, limits: TenantLimits) -> list[tuple[Any, ...]]:
    """The waiting jobs that fit the tenant's share now, in release order:
    (id, priority, kind, resolution, cost, created_at)."""
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
        return []
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
    return releasable[:free]


class _Dispatcher:
    """The web process's dispatches after submissions, off the request path:
    a submission's answer waits for its commit (durability), not for its
    dispatch. Requests name tenants; one thread dispatches each named tenant
    once per round, so a burst's submissions share a few dispatches instead
    of running one each (~20 % of a submission's CPU, profiled).

    Nothing is lost if the process dies first: the job is committed, and the
    repair sweep dispatches waiting jobs older than 10 s."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Any, TenantLimits | None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()

    def request(self, tenant_id: Any, limits: TenantLimits | None) -> None:
        self._requests.put((tenant_id, limits))  # no lock on the request path (a C queue)
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            thread = self._thread
            if thread is not None and self._pid == os.getpid() and thread.is_alive():
                return
            self._pid = os.getpid()  # a forked child starts its own thread
            self._thread = threading.Thread(target=self._run, name="jobs-dispatch", daemon=True)
            self._thread.start()

    def drain(self) -> None:
        """Dispatch what is pending now, in the calling thread (at exit)."""
        for tenant_id, limits in self._take(block=False).items():
            _dispatch_quietly(tenant_id, limits)

    def _take(self, *, block: bool) -> dict[Any, TenantLimits | None]:
        """The tenants requested since the last round, each once."""
        pending: dict[Any, TenantLimits | None] = {}
        try:
            if block:
                tenant_id, limits = self._requests.get()
                pending[tenant_id] = limits
            while True:
                tenant_id, limits = self._requests.get_nowait()
                pending[tenant_id] = limits
        except queue.Empty:
            pass
        return pending

    def _run(self) -> None:
        while True:
            for tenant_id, limits in self._take(block=True).items():
                _dispatch_quietly(tenant_id, limits)
            close_old_connections()  # as after a request: a broken or aged connection is replaced


def _dispatch_quietly(tenant_id: Any, limits: TenantLimits | None) -> None:
    try:
        jobs_dispatch(tenant_id=tenant_id, limits=limits)
    except Exception:  # database or broker trouble: the repair sweep dispatches later
        logger.warning("dispatch failed; the repair sweep will dispatch", extra={"tenant_id": str(tenant_id)}, exc_info=True)


_dispatcher = _Dispatcher()
atexit.register(_dispatcher.drain)


def jobs_dispatch_soon(*, tenant_id: Any, limits: TenantLimits | None = None) -> None:
    """jobs_dispatch for a submission, once its job is committed: in this
    process's dispatch thread (JOB_DISPATCH_IN_BACKGROUND), else at once."""
    if settings.JOB_DISPATCH_IN_BACKGROUND:
        _dispatcher.request(tenant_id, limits)
    else:
        jobs_dispatch(tenant_id=tenant_id, limits=limits)


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
