"""Job reads, always scoped to one tenant: another tenant's job is a 404."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from core.lookups import owned_or_404
from jobs.models import Job
from tenants.limits import tenant_limits
from tenants.models import Tenant
from tenants.selectors import usage_get


def job_get(*, tenant: Tenant, job_id: str) -> Job:
    return owned_or_404(Job.objects.all(), tenant=tenant, object_id=job_id, what="Job")


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
    rows = Job.objects.filter(tenant=tenant, created_at__year=year, created_at__month=month).values("status").annotate(count=Count("id"))
    by_status = {row["status"]: row["count"] for row in rows}
    limits = tenant_limits(tenant)
    used = usage.audio_seconds + usage.video_seconds
    return {
        "period": usage.period,
        "jobs": {status: by_status.get(status, 0) for status in Job.Status.values},
        "active_jobs": Job.objects.filter(tenant=tenant, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count(),
        "generated_seconds": {"audio": round(usage.audio_seconds, 3), "video": round(usage.video_seconds, 3), "total": round(used, 3)},
        "cache_hits": usage.cache_hits,
        "limits": limits.as_dict(),
        "quota_remaining_seconds": max(0.0, round(limits.monthly_seconds_quota - used, 3)) if limits.monthly_seconds_quota else None,
    }
