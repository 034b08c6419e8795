"""A job's files in storage. Keys are made by the server: no client-supplied
text ever reaches a storage path."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile

from core.errors import ApplicationError
from core.storage import storage_download, storage_errors
from engines.errors import PermanentEngineError
from jobs.models import Job

logger = logging.getLogger(__name__)


def job_inputs_store(*, tenant_id: Any, job_id: Any, files: dict[str, tuple[UploadedFile, str]]) -> dict[str, str]:
    """Store uploads by role before the job exists (a worker never sees a
    job without them). Storage down: nothing is kept, 503."""
    stored: dict[str, str] = {}
    try:
        for role, (upload, name) in files.items():
            upload.seek(0)
            key = f"tenants/{tenant_id}/jobs/{job_id}/{name}"
            stored[role] = default_storage.save(key, File(upload, name=name))
    except storage_errors():
        logger.warning("storing job inputs failed", exc_info=True)
        files_delete(stored.values())
        raise ApplicationError("service_unavailable", "Storage is unavailable; nothing was saved. Retry shortly.", status=503) from None
    return stored


def job_input_fetch(job: Job, role: str, workdir: Path) -> Path:
    """Copy an uploaded input from storage into the job's workdir (named by
    role: no client text in the path)."""
    key = job.input_files.get(role)
    if not key:
        raise PermanentEngineError(f"The job's {role} input is missing.", code="input_missing")
    target = workdir / role
    try:
        storage_download(key, target)
    except FileNotFoundError:
        raise PermanentEngineError(f"The job's {role} input was deleted from storage.", code="input_missing") from None
    return target


def job_output_store(job: Job, role: str, path: Path, stored: list[str]) -> str:
    """Store one output file; its key is appended to ``stored`` (for cleanup).
    One key per attempt, so a replaced worker can never overwrite or delete
    the object of the attempt that owns the job."""
    key = f"tenants/{job.tenant_id}/jobs/{job.id}/{role}-{job.attempts}.{path.suffix.lstrip('.')}"
    with path.open("rb") as handle:
        stored.append(default_storage.save(key, File(handle, name=key)))
    return stored[-1]


def files_delete(keys: Iterable[str]) -> None:
    """Delete stored files, best effort: what is left, purge_expired sweeps."""
    for key in keys:
        try:
            default_storage.delete(key)
        except Exception:
            logger.warning("could not delete a stored file", extra={"key": key}, exc_info=True)
