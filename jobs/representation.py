"""The public JSON body of a job (API responses, SSE, webhook payloads)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from core.responses import iso
from core.storage import signed_url, storage_is_local
from jobs.models import Job


def _result(job: Job, base_url: str) -> dict[str, Any] | None:
    if job.status != Job.Status.SUCCEEDED:
        return None
    expires_at = job.result_expires_at
    if storage_is_local():
        # Served by the API itself (authenticated) until retention ends.
        url = base_url.rstrip("/") + reverse("jobs:result", args=[job.id])
    else:
        # A presigned GET straight from the object store; it stops working
        # at expires_at (or when retention deletes the object, if sooner).
        url, url_expires_at = signed_url(job.result_key)
        expires_at = min(url_expires_at, expires_at) if expires_at else url_expires_at
    return {
        "url": url,
        "content_type": job.result_content_type,
        "duration_s": job.result_duration_s,
        "size_bytes": job.result_size_bytes,
        "expires_at": iso(expires_at),
        **job.result_info,  # speaker_similarity and voice details, for jobs with a voice
    }


def job_representation(job: Job, *, base_url: str | None = None) -> dict[str, Any]:
    """``base_url`` is the API's own origin (from the request); payloads built
    outside a request (webhooks, events) use ``PUBLIC_BASE_URL``."""
    error = {"code": job.error_code, "message": job.error_message} if job.status == Job.Status.FAILED else None
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "priority": job.priority,
        "engine": job.engine,
        "progress": job.progress,
        "stage": job.stage,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "attempts": job.attempts,
        "input": job.input,
        "result": _result(job, base_url or settings.PUBLIC_BASE_URL),
        "error": error,
        "cache_hit": job.cache_hit,
        "metadata": job.metadata,
    }
