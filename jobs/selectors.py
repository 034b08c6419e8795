"""Job reads, always scoped to one tenant: another tenant's job is a 404."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, QuerySet

from core.lookups import owned_row_or_404
from core.rows import quoted, quoted_column
from jobs.models import Job
from tenants.limits import tenant_limits
from tenants.models import Tenant
from tenants.selectors import usage_get


def job_get(*, tenant: Tenant, job_id: str) -> Job:
    return owned_row_or_404(Job, tenant=tenant, object_id=job_id, what="Job")


def active_job_count(*, tenant_id: Any) -> int:
    """The tenant's queued and running jobs. Every submission asks this
    (quotas): in plain SQL, as the ORM spent more compiling the count than
    the database spent answering it (profiled). Served by job_tenant_dispatch."""
    tenant = Job._meta.get_field("tenant").get_db_prep_value(tenant_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_active_job_count_sql(connection.vendor), [tenant, *Job.ACTIVE])
        return int(cursor.fetchone()[0])


@functools.cache
def _active_job_count_sql(vendor: str) -> str:
    """Built once per database vendor (its quoting)."""
    placeholders = ", ".join(["%s"] * len(Job.ACTIVE))
    return (
        f"SELECT COUNT(*) FROM {quoted(Job._meta.db_table)}"
        f" WHERE {quoted_column(Job, 'tenant')} = %s AND {quoted_column(Job, 'status')} IN ({placeholders})"
    )


def job_list(*, tenant: Tenant, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.filter(tenant=tenant)
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs.order_by("-created_at", "-id")


def usage_summary(*, tenant: Tenant) -> dict[str, Any]:
    usage = usage_get(tenant=tenant)
    year, month = (int(part) for part in usage.period.split("-"))
    # A range, not created_at__year/__month: those compare a function of the
    # column, which no index serves (every job of the tenant was read).
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    rows = Job.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end).values("status").annotate(count=Count("id"))
    by_status = {row["status"]: row["count"] for row in rows}
    limits = tenant_limits(tenant)
    used = usage.audio_seconds + usage.video_seconds
    return {
        "period": usage.period,
        "jobs": {status: by_status.get(status, 0) for status in Job.Status.values},
        "active_jobs": active_job_count(tenant_id=tenant.pk),
        "generated_seconds": {"audio": round(usage.audio_seconds, 3), "video": round(usage.video_seconds, 3), "total": round(used, 3)},
        "cache_hits": usage.cache_hits,
        "limits": limits.as_dict(),
        "quota_remaining_seconds": max(0.0, round(limits.monthly_seconds_quota - used, 3)) if limits.monthly_seconds_quota else None,
    }


# --------------------------------------------------------------- operations
# Staff-only reads across tenants: the dashboard and /metrics.

_NAMESPACE = "dramatiq"  # the Redis broker's key prefix


def queue_names() -> list[str]:
    """Every queue an actor consumes from. Actors declare their queues when
    their modules import (workers import them all at boot; a web process
    only on its first send), so import them here as the workers do."""
    import dramatiq
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
    declared = dramatiq.get_broker().get_declared_queues()
    return sorted(name for name in declared if not name.endswith((".DQ", ".XQ")))


def queue_depths(*, client: Any = None) -> list[dict[str, Any]]:
    """Messages per Dramatiq queue, read from the Redis broker's own keys:
    ``ready`` wait in the list, ``in_progress`` are fetched by a worker and
    not yet acknowledged (the ``.msgs`` hash holds both), ``delayed`` wait for
    a retry backoff or an eta, ``dead`` were dead-lettered."""
    from core.redis import redis_client

    names = queue_names()
    client = redis_client(socket_timeout=1.0) if client is None else client
    pipe = client.pipeline(transaction=False)
    for name in names:
        full = f"{_NAMESPACE}:{name}"
        pipe.llen(full)
        pipe.hlen(f"{full}.msgs")
        pipe.hlen(f"{full}.DQ.msgs")
        pipe.zcard(f"{full}.XQ")
    counts = pipe.execute()
    depths = []
    for index, name in enumerate(names):
        ready, held, delayed, dead = counts[4 * index : 4 * index + 4]
        depths.append({"queue": name, "ready": ready, "in_progress": max(0, held - ready), "delayed": delayed, "dead": dead})
    return depths


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return round(sorted_values[index], 3)


def _spread(values: list[float]) -> dict[str, Any]:
    values = sorted(values)
    return {"p50": _percentile(values, 0.5), "p95": _percentile(values, 0.95), "count": len(values)}


def dashboard_stats(*, now: Any, window_minutes: int = 60, sample_limit: int = 20_000) -> dict[str, Any]:
    """Throughput, latency, failures, top tenants and cache hits over the last
    ``window_minutes``, from the Job table. Percentiles come from at most
    ``sample_limit`` of the newest jobs in the window (exact below that)."""
    from datetime import timedelta

    from django.db.models import Q, Sum

    since = now - timedelta(minutes=window_minutes)
    minute = lambda moment: int((moment - since).total_seconds() // 60)  # noqa: E731
    submitted = [0] * window_minutes
    finished = [0] * window_minutes
    failed = [0] * window_minutes
    waits: dict[str, list[float]] = {kind: [] for kind in Job.Kind.values}
    runs: dict[str, list[float]] = {kind: [] for kind in Job.Kind.values}

    created = Job.objects.filter(created_at__gte=since).order_by("-created_at")
    for created_at, kind, started_at, cache_hit in created.values_list("created_at", "kind", "started_at", "cache_hit")[:sample_limit]:
        submitted[min(window_minutes - 1, minute(created_at))] += 1
        if started_at is not None and not cache_hit:
            waits[kind].append((started_at - created_at).total_seconds())
    ended = Job.objects.filter(finished_at__gte=since, status__in=[Job.Status.SUCCEEDED, Job.Status.FAILED]).order_by("-finished_at")
    for finished_at, kind, status, started_at, cache_hit in ended.values_list("finished_at", "kind", "status", "started_at", "cache_hit")[
        :sample_limit
    ]:
        assert finished_at is not None  # filtered on it
        bucket = min(window_minutes - 1, minute(finished_at))
        finished[bucket] += 1
        if status == Job.Status.FAILED:
            failed[bucket] += 1
        elif started_at is not None and not cache_hit:
            runs[kind].append((finished_at - started_at).total_seconds())

    terminal = Job.objects.filter(finished_at__gte=since, status__in=[Job.Status.SUCCEEDED, Job.Status.FAILED])
    outcome = terminal.aggregate(total=Count("id"), failed=Count("id", filter=Q(status=Job.Status.FAILED)))
    by_code = terminal.filter(status=Job.Status.FAILED).values("error_code").annotate(count=Count("id")).order_by("-count", "error_code")
    window = Job.objects.filter(created_at__gte=since)
    cache = window.aggregate(total=Count("id"), hits=Count("id", filter=Q(cache_hit=True)))
    tenants = (
        window.values("tenant__slug")
        .annotate(jobs=Count("id"), seconds=Sum("result_duration_s", filter=Q(status=Job.Status.SUCCEEDED)))
        .order_by("-jobs", "tenant__slug")[:10]
    )
    states = Job.objects.filter(status__in=Job.ACTIVE).values("kind", "status").annotate(count=Count("id"))
    return {
        "generated_at": now.isoformat(),
        "window_minutes": window_minutes,
        "minutes": [(since + timedelta(minutes=index + 1)).isoformat() for index in range(window_minutes)],
        "throughput": {"submitted": submitted, "finished": finished, "failed": failed},
        "latency": {kind: {"queue_wait_s": _spread(waits[kind]), "run_s": _spread(runs[kind])} for kind in Job.Kind.values},
        "failures": {
            "total": outcome["total"],
            "failed": outcome["failed"],
            "rate": round(outcome["failed"] / outcome["total"], 4) if outcome["total"] else 0.0,
            "by_code": [{"code": row["error_code"] or "unknown", "count": row["count"]} for row in by_code[:12]],
        },
        "top_tenants": [
            {"tenant": row["tenant__slug"], "jobs": row["jobs"], "seconds": round(row["seconds"] or 0.0, 1)} for row in tenants
        ],
        "cache": {
            "total": cache["total"],
            "hits": cache["hits"],
            "rate": round(cache["hits"] / cache["total"], 4) if cache["total"] else 0.0,
        },
        "active": [{"kind": row["kind"], "status": row["status"], "count": row["count"]} for row in states],
    }
