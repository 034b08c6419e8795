"""Webhook writes: publish events, deliver them, manage endpoints and secrets.

Delivery is at-least-once with one success: each attempt first claims the
Delivery row with a conditional UPDATE (pending and due → sending, leased), so
duplicate messages, the sweeper and a replay can never send in parallel or
record a second success. Receivers deduplicate on ``webhook-id``.

Fair share: the webhook workers' threads are shared by every tenant, and a
slow receiver holds one for up to the read timeout. So a tenant has at most
``max_webhooks_in_flight`` deliveries in the broker or being sent; the rest
wait in the database (``enqueued_at`` empty) and are released, first due
first, as that tenant's attempts end (:func:`deliveries_dispatch`). A message
for a delivery that is not released (a retry's delayed message) is a wake-up:
it dispatches the tenant's due deliveries within its share.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from core import metrics
from core.errors import ApplicationError
from tenants.limits import tenant_limits
from tenants.models import Tenant
from webhooks import routing, signing, transport
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, TenantSigningSecret

logger = logging.getLogger(__name__)

EVENT_TYPES = ("job.started", "job.progress", "job.succeeded", "job.failed", "job.canceled")
# Per-job webhook_url subscriptions get these unless the job names others.
DEFAULT_JOB_EVENT_TYPES = ("job.started", "job.succeeded", "job.failed", "job.canceled")


# ------------------------------------------------------------------ publish

# Every job event asks "who subscribed?". Workers cache the answer per tenant,
# keyed by ``Tenant.webhooks_version``, which every endpoint change bumps: the
# tenant row read with the job is never older than the job's claim, so a job
# claimed after an endpoint change always sees it (and a query per event was
# a third of a short job's run time).
_endpoints_cache: dict[Any, tuple[int, list[Endpoint]]] = {}


def _enabled_endpoints(tenant: Tenant) -> list[Endpoint]:
    cached = _endpoints_cache.get(tenant.pk)
    if cached and cached[0] == tenant.webhooks_version:
        return cached[1]
    endpoints = list(Endpoint.objects.filter(tenant=tenant, is_enabled=True))
    _endpoints_cache[tenant.pk] = (tenant.webhooks_version, endpoints)
    return endpoints


def _endpoints_changed(tenant_id: Any) -> None:
    Tenant.objects.filter(pk=tenant_id).update(webhooks_version=F("webhooks_version") + 1)
    _endpoints_cache.pop(tenant_id, None)


def event_publish(
    *,
    tenant: Tenant,
    event_type: str,
    data: dict[str, Any],
    job: Any = None,
    job_webhook_url: str = "",
    job_webhook_events: list[str] | None = None,
) -> list[Delivery]:
    """Create one Delivery per subscribed URL and send each after commit."""
    now = timezone.now()
    payload = {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    targets: list[tuple[Endpoint | None, str]] = [
        (endpoint, endpoint.url) for endpoint in _enabled_endpoints(tenant) if endpoint.wants(event_type)
    ]
    if job_webhook_url and event_type in (job_webhook_events or DEFAULT_JOB_EVENT_TYPES):
        targets.append((None, job_webhook_url))
    if not targets:
        return []
    try:
        return _deliveries_create(tenant, targets, job, event_type, payload, now)
    except IntegrityError:
        # An endpoint in this worker's cache was deleted meanwhile: retry
        # with the current list rather than lose the event for every target.
        _endpoints_cache.pop(tenant.pk, None)
        current = set(Endpoint.objects.filter(tenant=tenant, is_enabled=True).values_list("id", flat=True))
        targets = [(endpoint, url) for endpoint, url in targets if endpoint is None or endpoint.id in current]
        return _deliveries_create(tenant, targets, job, event_type, payload, now)


def _deliveries_create(
    tenant: Tenant, targets: list[tuple[Endpoint | None, str]], job: Any, event_type: str, payload: dict[str, Any], now: datetime
) -> list[Delivery]:
    deliveries = [
        Delivery(tenant=tenant, endpoint=endpoint, job=job, url=url, event_type=event_type, payload=payload, next_attempt_at=now)
        for endpoint, url in targets
    ]
    limit = tenant_limits(tenant).max_webhooks_in_flight
    with transaction.atomic():
        Delivery.objects.bulk_create(deliveries)
        transaction.on_commit(partial(_dispatch_quietly, tenant.pk, limit=limit))
    return deliveries


def _enqueue(delivery_id: Any, *, delay_s: float = 0.0) -> None:
    """Send the delivery's message; if Redis is down the sweeper sends it."""
    try:
        routing.send(routing.WEBHOOK_DELIVER, str(delivery_id), delay_ms=int(delay_s * 1000) or None)
    except Exception:  # broker connection errors of every kind
        logger.warning("could not enqueue a webhook delivery; the sweeper will", extra={"delivery_id": str(delivery_id)})


# ---------------------------------------------------------------- fair share

_IN_FLIGHT = (Delivery.Status.PENDING, Delivery.Status.SENDING)


def deliveries_dispatch(*, tenant_id: Any, limit: int | None = None) -> int:
    """Hand the tenant's due, waiting deliveries to the broker while fewer
    than its ``max_webhooks_in_flight`` are there or being sent, first due
    first. Called after a publish, after every attempt, after a replay and by
    the sweeper. The tenant's row is locked meanwhile (SQLite: the write
    transaction), so concurrent dispatchers never exceed the share. Returns
    how many were handed over."""
    if limit is None:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            return 0
        limit = tenant_limits(tenant).max_webhooks_in_flight
    now = timezone.now()
    with transaction.atomic():
        if connection.features.has_select_for_update:
            Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).exists()
        in_flight = Delivery.objects.filter(tenant_id=tenant_id, status__in=_IN_FLIGHT, enqueued_at__isnull=False).count()
        free = limit - in_flight
        if free <= 0:
            return 0
        due = Delivery.objects.filter(
            tenant_id=tenant_id, status=Delivery.Status.PENDING, enqueued_at__isnull=True, next_attempt_at__lte=now
        )
        released = list(due.order_by("next_attempt_at", "created_at").values_list("id", flat=True)[:free])
        if released:
            Delivery.objects.filter(id__in=released).update(enqueued_at=now)
    for delivery_id in released:
        _enqueue(delivery_id)  # Redis down: the sweeper sends it again
    return len(released)


def _dispatch_quietly(tenant_id: Any, *, limit: int | None = None) -> None:
    """Dispatch, logging a failure: the sweeper dispatches later (nothing is lost)."""
    try:
        deliveries_dispatch(tenant_id=tenant_id, limit=limit)
    except Exception:
        logger.exception("could not dispatch webhook deliveries; the sweeper will", extra={"tenant_id": str(tenant_id)})


def deliveries_in_flight(*, tenant_id: Any) -> int:
    return Delivery.objects.filter(tenant_id=tenant_id, status__in=_IN_FLIGHT, enqueued_at__isnull=False).count()


# ------------------------------------------------------------------ deliver


def _claim(delivery_id: str) -> Delivery | None:
    now = timezone.now()
    lease = timedelta(seconds=settings.WEBHOOK_CONNECT_TIMEOUT_S + settings.WEBHOOK_READ_TIMEOUT_S + 30)
    claimed = Delivery.objects.filter(
        id=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now, enqueued_at__isnull=False
    ).update(status=Delivery.Status.SENDING, locked_until=now + lease, attempts=F("attempts") + 1)
    if not claimed:
        return None
    return Delivery.objects.select_related("endpoint", "tenant").get(id=delivery_id)


def _signing_secrets(delivery: Delivery, now: datetime) -> list[str]:
    if delivery.endpoint is not None:
        return delivery.endpoint.active_secrets(now)
    return tenant_signing_secret(tenant=delivery.tenant).active_secrets(now)


def _retry_delay_s(attempts: int) -> float | None:
    """Exponential schedule from settings, with ±20 % jitter so failed
    deliveries to one receiver do not come back all at once."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE_S
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * random.uniform(0.8, 1.2)


def _is_retriable(outcome: transport.SendOutcome) -> bool:
    if outcome.refused:
        return False
    code = outcome.status_code
    return code is None or code >= 500 or code in (408, 429)  # None: timeout, connection error


def webhook_deliver(*, delivery_id: str) -> None:
    """One attempt: claim, sign, POST, record, then finish or schedule a
    retry; then hand the tenant's next waiting delivery to the broker."""
    delivery = _claim(delivery_id)
    if delivery is None:
        # A duplicate message, or one for a delivery already finished: nothing
        # to do. A delivery waiting its turn (this was its retry's wake-up):
        # release the tenant's due deliveries within its share.
        waiting = Delivery.objects.filter(id=delivery_id, status=Delivery.Status.PENDING, enqueued_at__isnull=True)
        tenant_id = waiting.values_list("tenant_id", flat=True).first()
        if tenant_id is not None:
            _dispatch_quietly(tenant_id)
        return
    try:
        _attempt(delivery)
    finally:
        _dispatch_quietly(delivery.tenant_id, limit=tenant_limits(delivery.tenant).max_webhooks_in_flight)


def _attempt(delivery: Delivery) -> None:
    now = timezone.now()
    if delivery.endpoint is not None and not delivery.endpoint.is_enabled:
        _finish(delivery, Delivery.Status.FAILED, error="The endpoint is disabled.", count_failure=False)
        return
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": "Mynah-Webhooks/1",
        "webhook-id": str(delivery.id),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            secrets_=_signing_secrets(delivery, now), msg_id=str(delivery.id), timestamp=timestamp, body=body
        ),
    }
    outcome = transport.post(url=delivery.url, body=body, headers=headers)
    try:
        _record(delivery, outcome, now)
    except Exception:
        # Whatever failed (database), the row stays leased: the sweeper hands
        # it back once the lease ends, and gives up once retries are spent.
        logger.exception("could not record a webhook attempt", extra={"delivery_id": str(delivery.id)})


def _mine(delivery: Delivery) -> Any:
    """The delivery's row, if this attempt still holds it: a lease that ran
    out may have been handed to another attempt, whose outcome then wins."""
    return Delivery.objects.filter(id=delivery.id, status=Delivery.Status.SENDING, attempts=delivery.attempts)


def _record(delivery: Delivery, outcome: transport.SendOutcome, now: datetime) -> None:
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        started_at=now,
        status_code=outcome.status_code,
        latency_ms=outcome.latency_ms,
        error=outcome.error,
        response_excerpt=outcome.response_excerpt,
    )
    if outcome.latency_ms is not None:
        metrics.observe(metrics.webhook_attempt_seconds, outcome.latency_ms / 1000)
    if outcome.succeeded:
        metrics.increment(metrics.webhook_attempts, outcome="succeeded")
        _finish(delivery, Delivery.Status.SUCCEEDED, status_code=outcome.status_code)
        return
    error = outcome.error or f"HTTP {outcome.status_code}"
    delay = _retry_delay_s(delivery.attempts) if _is_retriable(outcome) else None
    if delay is None or _past_window(delivery, now + timedelta(seconds=delay)):
        metrics.increment(metrics.webhook_attempts, outcome="failed")
        _finish(delivery, Delivery.Status.FAILED, status_code=outcome.status_code, error=error, gone=outcome.status_code == 410)
        return
    metrics.increment(metrics.webhook_attempts, outcome="retrying")
    rescheduled = _mine(
        delivery
    ).update(
        status=Delivery.Status.PENDING,
        next_attempt_at=now + timedelta(seconds=delay),
        enqueued_at=None,  # waiting for its next attempt holds no share
        locked_until=None,
        last_status_code=outcome.status_code,
        last_error=error[:500],
    )
    if rescheduled and delay <= settings.WEBHOOK_BROKER_DELAY_MAX_S:
        _enqueue(delivery.id, delay_s=delay)  # a wake-up: it dispatches once due
    # Longer waits are not parked in the broker (workers hold delayed
    # messages in memory): the sweeper dispatches them when they are due.


def _past_window(delivery: Delivery, when: datetime) -> bool:
    return delivery.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_S) < when


def _finish(
    delivery: Delivery,
    status: str,
    *,
    status_code: int | None = None,
    error: str = "",
    gone: bool = False,
    count_failure: bool = True,
) -> None:
    finished = _mine(delivery).update(
        status=status, finished_at=timezone.now(), locked_until=None, last_status_code=status_code, last_error=error[:500]
    )
    endpoint = delivery.endpoint
    if endpoint is None or not finished:
        return
    if status == Delivery.Status.SUCCEEDED:
        if endpoint.consecutive_failures:
            Endpoint.objects.filter(id=endpoint.id).update(consecutive_failures=0)
        return
    if not count_failure:
        return
    Endpoint.objects.filter(id=endpoint.id).update(consecutive_failures=F("consecutive_failures") + 1)
    endpoint.refresh_from_db(fields=["consecutive_failures", "is_enabled"])
    if gone:
        endpoint_disable(endpoint=endpoint, reason="The receiver answered 410 Gone.")
    elif endpoint.consecutive_failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES:
        endpoint_disable(endpoint=endpoint, reason=f"{endpoint.consecutive_failures} deliveries in a row failed.")


def webhooks_sweep() -> int:
    """Send what a lost message, a dead worker or a long backoff left behind,
    within each tenant's fair share. Run periodically (``manage.py repair``;
    ``make run`` does every 30 s). Returns how many messages it sent."""
    now = timezone.now()
    expired_leases = Delivery.objects.filter(status=Delivery.Status.SENDING, locked_until__lt=now)
    # An attempt that never recorded its outcome (worker died, database error)
    # counts as made: past the schedule or the window, the delivery fails.
    exhausted = Q(attempts__gt=len(settings.WEBHOOK_RETRY_SCHEDULE_S)) | Q(
        created_at__lt=now - timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_S)
    )
    expired_leases.filter(exhausted).update(
        status=Delivery.Status.FAILED, finished_at=now, locked_until=None, last_error="No outcome recorded; retries exhausted."
    )
    expired_leases.update(status=Delivery.Status.PENDING, locked_until=None, enqueued_at=None)
    # Handed to the broker a while ago and still not attempted: the message
    # was lost (or Redis was down). Send it again; it keeps its share.
    before = now - timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_S)
    lost = list(
        Delivery.objects.filter(status=Delivery.Status.PENDING, enqueued_at__lte=before, next_attempt_at__lte=before).values_list(
            "id", flat=True
        )[:1000]
    )
    for delivery_id in lost:
        Delivery.objects.filter(id=delivery_id, status=Delivery.Status.PENDING).update(enqueued_at=now)
        _enqueue(delivery_id)
    # Waiting and due (a long backoff, a lost wake-up): each tenant's share.
    tenant_ids = (
        Delivery.objects.filter(status=Delivery.Status.PENDING, enqueued_at__isnull=True, next_attempt_at__lte=now)
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    return len(lost) + sum(deliveries_dispatch(tenant_id=tenant_id) for tenant_id in list(tenant_ids))


def deliveries_purge(*, now: datetime, dry_run: bool = False) -> int:
    """Delete finished deliveries (and their attempts) older than
    WEBHOOK_DELIVERY_RETENTION_DAYS; pending ones are never touched. The
    number deleted, or that would be."""
    old = Delivery.objects.filter(
        status__in=[Delivery.Status.SUCCEEDED, Delivery.Status.FAILED],
        created_at__lt=now - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS),
    )
    if dry_run:
        return old.count()
    deleted = 0
    while True:  # in batches: one huge DELETE would hold locks for long
        ids = list(old.values_list("id", flat=True)[:1000])
        if not ids:
            return deleted
        deleted += Delivery.objects.filter(id__in=ids).delete()[1].get(Delivery._meta.label, 0)


def delivery_replay(*, delivery: Delivery, actor: str, ip: str | None = None) -> Delivery:
    """Send a finished delivery again (same webhook-id, same payload)."""
    if delivery.endpoint is not None and not delivery.endpoint.is_enabled:
        raise ApplicationError("endpoint_disabled", "The endpoint is disabled; enable it before replaying.", status=409)
    replayed = Delivery.objects.filter(id=delivery.id, status__in=[Delivery.Status.SUCCEEDED, Delivery.Status.FAILED]).update(
        status=Delivery.Status.PENDING, next_attempt_at=timezone.now(), finished_at=None, enqueued_at=None
    )
    if not replayed:
        raise ApplicationError("delivery_in_progress", "The delivery is still being attempted.", status=409)
    audit_record(action="webhook_delivery.replay", actor=actor, tenant=delivery.tenant, target=delivery, ip=ip)
    transaction.on_commit(partial(_dispatch_quietly, delivery.tenant_id))
    delivery.refresh_from_db()
    return delivery


# ---------------------------------------------------------------- endpoints


def _check_url(url: str) -> None:
    try:
        transport.url_check(url)
    except transport.UnsafeTarget as exc:
        raise ApplicationError("unsafe_webhook_url", str(exc), details={"url": url}) from None


def _check_event_types(event_types: list[str]) -> None:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise ApplicationError(
            "unknown_event_type", f"Unknown event types: {', '.join(unknown)}.", details={"event_types": list(EVENT_TYPES)}
        )


def job_webhook_check(*, url: str, event_types: list[str] | None) -> None:
    """Validate a per-job webhook_url (and its event filter) at submit."""
    _check_url(url)
    if event_types is not None:
        _check_event_types(event_types)


def endpoint_limit_check(*, tenant: Tenant) -> None:
    """409 ``too_many_webhook_endpoints`` when the tenant has its limit of
    endpoints (enabled or not: each is a row, a secret and a fan-out target)."""
    limit = tenant_limits(tenant).max_webhook_endpoints
    count = Endpoint.objects.filter(tenant=tenant).count()
    if count >= limit:
        raise ApplicationError(
            "too_many_webhook_endpoints",
            f"The tenant has {count} webhook endpoints; the limit is {limit}. Delete one, or filter events per endpoint.",
            status=409,
            details={"endpoints": count, "limit": limit},
        )


def endpoint_create(
    *, tenant: Tenant, url: str, event_types: list[str], description: str = "", actor: str, ip: str | None = None
) -> Endpoint:
    _check_url(url)
    _check_event_types(event_types)
    with transaction.atomic():
        # One tenant's creations in turn, so the limit is exact. SQLite's
        # IMMEDIATE transactions already serialize writers; Postgres locks the
        # row, FOR NO KEY UPDATE so rows referencing the tenant (a worker's
        # UsagePeriod insert) need not wait (see jobs.services.submit).
        if connection.features.has_select_for_update:
            Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).exists()
        endpoint_limit_check(tenant=tenant)
        endpoint = Endpoint.objects.create(
            tenant=tenant, url=url, event_types=sorted(set(event_types)), description=description, secret=signing.secret_generate()
        )
    audit_record(action="webhook_endpoint.create", actor=actor, tenant=tenant, target=endpoint, ip=ip, metadata={"url": url})
    _endpoints_changed(tenant.pk)
    return endpoint


def endpoint_update(*, endpoint: Endpoint, actor: str, ip: str | None = None, **changes: Any) -> Endpoint:
    if "url" in changes:
        _check_url(changes["url"])
    if "event_types" in changes:
        _check_event_types(changes["event_types"])
        changes["event_types"] = sorted(set(changes["event_types"]))
    if changes.get("is_enabled") is True:
        changes.update(disabled_reason="", disabled_at=None, consecutive_failures=0)
    for field, value in changes.items():
        setattr(endpoint, field, value)
    endpoint.save(update_fields=[*changes, "updated_at"])  # never write back a stale secret or state
    _endpoints_changed(endpoint.tenant_id)
    audit_record(
        action="webhook_endpoint.update",
        actor=actor,
        tenant=endpoint.tenant,
        target=endpoint,
        ip=ip,
        metadata={"fields": sorted(changes)},
    )
    return endpoint


def endpoint_disable(*, endpoint: Endpoint, reason: str) -> None:
    """Stop sending to an endpoint that keeps failing; staff see it in admin."""
    disabled = Endpoint.objects.filter(id=endpoint.id, is_enabled=True).update(
        is_enabled=False, disabled_reason=reason[:300], disabled_at=timezone.now()
    )
    _endpoints_changed(endpoint.tenant_id)
    if disabled:
        logger.warning("webhook endpoint disabled", extra={"endpoint_id": str(endpoint.id), "reason": reason})
        audit_record(
            action="webhook_endpoint.disable", actor="system", tenant=endpoint.tenant, target=endpoint, metadata={"reason": reason}
        )


def endpoint_delete(*, endpoint: Endpoint, actor: str, ip: str | None = None) -> None:
    audit_record(action="webhook_endpoint.delete", actor=actor, tenant=endpoint.tenant, target=endpoint, ip=ip)
    endpoint.delete()
    _endpoints_changed(endpoint.tenant_id)


def _rotate(holder: Endpoint | TenantSigningSecret) -> None:
    holder.previous_secret = holder.secret
    holder.previous_secret_expires_at = timezone.now() + timedelta(seconds=settings.WEBHOOK_SECRET_ROTATION_GRACE_S)
    holder.secret = signing.secret_generate()
    holder.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])


def endpoint_secret_rotate(*, endpoint: Endpoint, actor: str, ip: str | None = None) -> Endpoint:
    """New secret now; the old one still signs (alongside) for the grace period."""
    _rotate(endpoint)
    audit_record(action="webhook_endpoint.rotate_secret", actor=actor, tenant=endpoint.tenant, target=endpoint, ip=ip)
    return endpoint


def tenant_signing_secret(*, tenant: Tenant) -> TenantSigningSecret:
    holder, _ = TenantSigningSecret.objects.get_or_create(tenant=tenant, defaults={"secret": signing.secret_generate()})
    return holder


def tenant_signing_secret_rotate(*, tenant: Tenant, actor: str, ip: str | None = None) -> TenantSigningSecret:
    holder = tenant_signing_secret(tenant=tenant)
    _rotate(holder)
    audit_record(action="webhook_secret.rotate", actor=actor, tenant=tenant, target=holder, ip=ip)
    return holder
