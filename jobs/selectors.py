"""Job reads, always scoped to one tenant: another tenant's job is a 404."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFound
from jobs.models import Job
from tenants.models import Tenant


def job_get(*, tenant: Tenant, job_id: str) -> Job:
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound("Job not found.") from None
    job = Job.objects.filter(tenant=tenant, id=key).first()
    if job is None:
        raise NotFound("Job not found.")
    return job


def job_list(*, tenant: Tenant, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.filter(tenant=tenant)
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs.order_by("-created_at", "-id")
