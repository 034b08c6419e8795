"""Retention: expired results and inputs leave storage, jobs are marked
``expired``, orphan objects are swept, old records are trimmed.

Every step is safe to re-run and to run concurrently (two CronJob pods, a
cron overlapping a slow run): jobs are claimed one by one with conditional
UPDATEs, deletes are idempotent, and a run that dies half way leaves its
claimed jobs in stage ``purging`` for the next run to finish.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from core.storage import storage_errors
from jobs.models import Job
from tenants.limits import tenant_limits
from tenants.models import Tenant
from voices.models import VoicePrompt

logger = logging.getLogger(__name__)
Status = Job.Status

PURGING = "purging"  # stage of a job whose files are being deleted
EXPIRED = "expired"


@dataclass
class PurgeReport:
    dry_run: bool = False
    jobs_expired: int = 0
    jobs_inputs_purged: int = 0
    objects_deleted: int = 0
    objects_kept_shared: int = 0
    orphans_deleted: int = 0
    errors: int = 0
    keys: list[str] = field(default_factory=list)  # deleted (or, dry run, to delete)


def jobs_purge(*, now: datetime, dry_run: bool = False, orphans: bool = True, batch_size: int = 500) -> PurgeReport:
    """The jobs app's purge step (``manage.py purge_expired`` runs it with the
    other apps' steps): expired results and old inputs leave storage, then
    unreferenced objects are swept (``orphans=False`` skips that)."""
    report = PurgeReport(dry_run=dry_run)
    jobs_expire(now=now, report=report, batch_size=batch_size)
    jobs_inputs_purge(now=now, report=report, batch_size=batch_size)
    if orphans:
        storage_orphans_sweep(now=now, report=report)
    return report


# ---------------------------------------------------------------- results


def _result_keys(job: Job) -> list[str]:
    keys = [job.result_key] if job.result_key else []
    return keys + [item["key"] for item in (job.result_files or {}).values() if item.get("key")]


def _twin_result_keys(job: Job) -> set[str]:
    """Objects that unexpired dedup twins of this job use. Cache hits and jobs
    that joined a running twin share the stored output; they all carry the
    same tenant and dedup key (an indexed lookup)."""
    if not job.dedup_key:
        return set()
    twins = Job.objects.filter(tenant_id=job.tenant_id, dedup_key=job.dedup_key).exclude(id=job.id).exclude(status=Status.EXPIRED)
    return {key for twin in twins.only("result_key", "result_files") for key in _result_keys(twin)}


def _delete(keys: list[str], report: PurgeReport) -> bool:
    """Delete objects (a missing one counts as deleted). False if storage failed."""
    ok = True
    for key in keys:
        report.keys.append(key)
        if report.dry_run:
            report.objects_deleted += 1
            continue
        try:
            default_storage.delete(key)
            report.objects_deleted += 1
        except storage_errors():
            logger.warning("could not delete a stored object; the next run retries", extra={"key": key}, exc_info=True)
            report.errors += 1
            ok = False
    return ok


def _job_files_delete(job: Job, report: PurgeReport) -> bool:
    shared = _twin_result_keys(job)
    keys = [key for key in _result_keys(job) if key not in shared]
    report.objects_kept_shared += len(_result_keys(job)) - len(keys)
    return _delete(keys + list((job.input_files or {}).values()), report)


def jobs_expire(*, now: datetime, report: PurgeReport, batch_size: int = 500) -> None:
    """Succeeded jobs past ``result_expires_at`` become ``expired`` and lose
    their output and input files. A job is claimed (succeeded -> expired,
    stage purging) before its files go, so concurrent runs never both work on
    it, and a dedup twin never sees a half-deleted output as available."""
    due = Job.objects.filter(status=Status.SUCCEEDED, result_expires_at__lte=now)
    if report.dry_run:
        for job in due.only("id", "tenant_id", "dedup_key", "result_key", "result_files", "input_files").iterator():
            report.jobs_expired += 1
            _job_files_delete(job, report)
        return
    # Jobs a previous run claimed but did not finish (it died, or storage failed).
    _finish_purging(Job.objects.filter(status=Status.EXPIRED, stage=PURGING), report)
    while True:
        ids = list(due.order_by("result_expires_at").values_list("id", flat=True)[:batch_size])
        if not ids:
            return
        claimed = [
            job_id
            for job_id in ids
            if Job.objects.filter(id=job_id, status=Status.SUCCEEDED, result_expires_at__lte=now).update(
                status=Status.EXPIRED, stage=PURGING
            )
        ]
        report.jobs_expired += len(claimed)
        _finish_purging(Job.objects.filter(id__in=claimed), report)


def _finish_purging(jobs: Any, report: PurgeReport) -> None:
    for job in jobs.only("id", "tenant_id", "dedup_key", "result_key", "result_files", "input_files"):
        if _job_files_delete(job, report):
            Job.objects.filter(id=job.id, stage=PURGING).update(stage=EXPIRED, input_files={})


# ----------------------------------------------------------------- inputs


def jobs_inputs_purge(*, now: datetime, report: PurgeReport, batch_size: int = 500) -> None:
    """Failed and canceled jobs keep their uploads (staff may retry them) for
    the tenant's retention period after they ended, then lose them. The row
    and its error stay."""
    retention = {tenant.pk: tenant_limits(tenant).result_retention_days for tenant in Tenant.objects.all()}
    oldest_cutoff = now - timedelta(days=min(retention.values(), default=settings.JOB_RESULT_RETENTION_DAYS))
    candidates = (
        Job.objects.filter(status__in=[Status.FAILED, Status.CANCELED], finished_at__lte=oldest_cutoff)
        .exclude(input_files={})
        .only("id", "tenant_id", "finished_at", "input_files")
    )
    for job in candidates.iterator(chunk_size=batch_size):
        days = retention.get(job.tenant_id, settings.JOB_RESULT_RETENTION_DAYS)
        assert job.finished_at is not None  # filtered on it
        if job.finished_at > now - timedelta(days=days):
            continue
        keys = list(job.input_files.values())
        if report.dry_run:
            report.jobs_inputs_purged += 1
            _delete(keys, report)
            continue
        # Claim by clearing the references first: a concurrent run or a staff
        # retry that saw the same files then finds none (a retry fails with
        # input_missing rather than running on half-deleted inputs).
        if Job.objects.filter(id=job.id, status__in=[Status.FAILED, Status.CANCELED], input_files=job.input_files).update(input_files={}):
            report.jobs_inputs_purged += 1
            _delete(keys, report)  # a failure leaves orphans for the sweep


# ---------------------------------------------------------------- orphans


def _listdir(path: str) -> tuple[list[str], list[str]]:
    try:
        return default_storage.listdir(path)
    except FileNotFoundError:
        return [], []


def _old_enough(key: str, cutoff: datetime) -> bool:
    try:
        return default_storage.get_modified_time(key) <= cutoff
    except FileNotFoundError:
        return False


def _sweep_dir(prefix: str, files: list[str], referenced: set[str], cutoff: datetime, report: PurgeReport) -> None:
    for name in files:
        key = f"{prefix}/{name}"
        if key in referenced or not _old_enough(key, cutoff):
            continue
        report.keys.append(key)
        report.orphans_deleted += 1
        if not report.dry_run:
            try:
                default_storage.delete(key)
            except storage_errors():
                report.orphans_deleted -= 1
                report.errors += 1


def _job_references(job_ids: list[str]) -> dict[str, set[str]]:
    """Keys the jobs of these directories (and their unexpired dedup twins) use."""
    jobs = Job.objects.filter(id__in=job_ids).only("id", "tenant_id", "status", "dedup_key", "result_key", "result_files", "input_files")
    references: dict[str, set[str]] = {}
    for job in jobs:
        keys = set((job.input_files or {}).values())
        if job.status != Status.EXPIRED:
            keys.update(_result_keys(job))
        references[str(job.id)] = keys | _twin_result_keys(job)
    return references


def storage_orphans_sweep(*, now: datetime, report: PurgeReport) -> None:
    """Objects under ``tenants/<t>/jobs/<id>/`` and ``tenants/<t>/voices/<id>/``
    that no row references (a deleted voice whose files could not be
    removed, a dead worker's half-stored output, a deleted tenant), older
    than STORAGE_ORPHAN_GRACE_S so uploads still being written are safe."""
    cutoff = now - timedelta(seconds=settings.STORAGE_ORPHAN_GRACE_S)
    tenant_dirs, _ = _listdir("tenants")
    for tenant_dir in tenant_dirs:
        base = f"tenants/{tenant_dir}"
        job_dirs, _ = _listdir(f"{base}/jobs")
        for start in range(0, len(job_dirs), 500):
            chunk = job_dirs[start : start + 500]
            references = _job_references([name for name in chunk if _is_uuid(name)])
            for job_dir in chunk:
                prefix = f"{base}/jobs/{job_dir}"
                _sweep_dir(prefix, _listdir(prefix)[1], references.get(job_dir, set()), cutoff, report)
        voice_dirs, _ = _listdir(f"{base}/voices")
        voices = {
            str(voice.id): {voice.upload_key, voice.prompt_key}
            for voice in VoicePrompt.objects.filter(id__in=[name for name in voice_dirs if _is_uuid(name)]).only(
                "id", "upload_key", "prompt_key"
            )
        }
        for voice_dir in voice_dirs:
            prefix = f"{base}/voices/{voice_dir}"
            _sweep_dir(prefix, _listdir(prefix)[1], voices.get(voice_dir, set()), cutoff, report)


def _is_uuid(name: str) -> bool:
    try:
        uuid.UUID(name)
    except ValueError:
        return False
    return True
