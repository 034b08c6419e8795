"""The public JSON body of a job (API responses, SSE, webhook payloads)."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, reverse

from core.responses import iso
from core.storage import signed_url, storage_is_local
from jobs.models import Job

# Stand-ins that reverse() leaves as they are (a job id matches <str>, a
# role <slug>), replaced in the reversed path by the real values.
_JOB_ID, _ROLE = "job-id-placeholder", "role-placeholder"


@functools.lru_cache(maxsize=32)
def _path_template(name: str, with_role: bool, script_prefix: str) -> str:
    return reverse(name, args=[_JOB_ID, _ROLE] if with_role else [_JOB_ID])


def job_path(name: str, job_id: Any, role: str | None = None) -> str:
    """``reverse(name, args=[job_id(, role)])`` for the job URLs every
    representation carries, from a cached template: reverse() cost ~6 % of
    a job read's CPU (23.5 us a URL, 2.4 us here). Job ids are UUIDs and
    roles slugs, so neither needs the quoting reverse() would apply."""
    path = _path_template(name, role is not None, get_script_prefix()).replace(_JOB_ID, str(job_id), 1)
    return path.replace(_ROLE, role, 1) if role is not None else path


def _file_url(job: Job, key: str, base_url: str, expires_at: Any, role: str | None = None) -> tuple[str, Any]:
    if storage_is_local():
        # Served by the API itself (authenticated) until retention ends.
        path = job_path("jobs:result-file", job.id, role) if role else job_path("jobs:result", job.id)
        return base_url.rstrip("/") + path, expires_at
    # A presigned GET straight from the object store; it stops working
    # at expires_at (or when retention deletes the object, if sooner).
    url, url_expires_at = signed_url(key)
    return url, min(url_expires_at, expires_at) if expires_at else url_expires_at


def _result(job: Job, base_url: str) -> dict[str, Any] | None:
    if job.status != Job.Status.SUCCEEDED:
        return None
    url, expires_at = _file_url(job, job.result_key, base_url, job.result_expires_at)
    result = {
        "url": url,
        "content_type": job.result_content_type,
        "duration_s": job.result_duration_s,
        "size_bytes": job.result_size_bytes,
        "expires_at": iso(expires_at),
        # Speech with a voice: speaker_similarity, voice. Talking head: width,
        # height, fps, frames, resolution (used) and requested_resolution, face, warnings.
        **job.result_info,
    }
    for role, stored in job.result_files.items():  # e.g. "audio": the speech a video was made from
        file_url, file_expires_at = _file_url(job, stored["key"], base_url, job.result_expires_at, role)
        details = {name: value for name, value in stored.items() if name != "key"}
        result[role] = {"url": file_url, **details, "expires_at": iso(file_expires_at)}
    return result


def job_representation(job: Job, *, base_url: str | None = None) -> dict[str, Any]:
    """``base_url`` is the API's own origin (from the request); payloads built
    outside a request (webhooks, events) use ``PUBLIC_BASE_URL``."""
    error = {"code": job.error_code, "message": job.error_message} if job.status == Job.Status.FAILED else None
    base = base_url or settings.PUBLIC_BASE_URL
    # Speech streams its audio while it is made (jobs/audio_stream.py).
    audio_stream_url = base.rstrip("/") + job_path("jobs:audio-stream", job.id) if job.kind == Job.Kind.TTS else None
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
        "result": _result(job, base),
        "audio_stream_url": audio_stream_url,
        "error": error,
        "cache_hit": job.cache_hit,
        "metadata": job.metadata,
    }
