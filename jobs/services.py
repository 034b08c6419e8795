"""Job writes: submit, enqueue, claim, run, progress, finish.

Every status change is a conditional UPDATE on the expected current status;
the row count says whether this caller won. That makes redelivered messages,
concurrent workers and cancellation safe without locks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dramatiq
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from core import metrics
from core.context import job_id_var
from core.errors import ApplicationError
from core.models import IdempotencyRecord
from core.storage import storage_errors
from engines import registry
from engines.errors import (
    Canceled,
    EngineError,
    EngineOutOfMemory,
    PermanentEngineError,
    UnknownEngine,
)
from engines.tts.base import SpeechRequest, SpeechResult, VoiceReference
from jobs import events
from jobs.models import Job
from jobs.representation import job_representation
from jobs.uploads import audio_check, image_check
from tenants.limits import TenantLimits, tenant_limits
from tenants.models import ApiKey, Tenant
from tenants.selectors import usage_get
from tenants.services import usage_record
from voices.models import VoicePrompt
from voices.services import voice_reference
from webhooks.services import event_publish

logger = logging.getLogger(__name__)
Status = Job.Status

# Share of overall progress given to the engine; the rest is storing.
_ENGINE_PROGRESS_SHARE = 95


class JobRetry(Exception):
    """Raised to the actor so Dramatiq re-delivers the message with backoff."""


class JobBusy(JobRetry, dramatiq.Retry):
    """The job is running elsewhere, or its worker died so recently that its
    heartbeat is not stale yet. Redelivered when the heartbeat would be stale
    (not on the short retry backoff, whose few retries a dead worker's job
    could use up before it becomes claimable), the message finds the job
    finished (and is dropped) or abandoned (and claims it). A dramatiq.Retry:
    not logged as an error."""

    def __init__(self, job_id: str, *, delay_ms: int | None = None) -> None:
        dramatiq.Retry.__init__(self, job_id, delay=delay_ms)


@dataclass(frozen=True)
class TtsParams:
    text: str
    language: str
    engine: str
    format: str
    speed: float
    voice: VoicePrompt | None = None
    instruct: str = ""


# Talking-head parameters and their defaults (Sonic's names and ranges).
TALKING_HEAD_DEFAULTS: dict[str, Any] = {
    "resolution": 512, "expand_ratio": 0.18, "inference_steps": 25, "dynamic_scale": 1.0, "motion_scale": 1.05,
    "fps": 25, "temporal_smoothing": True, "lip_sync_correction": True,
}
# The ones an engine may not honour (declared in its ``options``); resolution,
# expand_ratio and fps every engine honours.
TALKING_HEAD_ENGINE_OPTIONS = ("inference_steps", "dynamic_scale", "motion_scale", "temporal_smoothing", "lip_sync_correction")


@dataclass(frozen=True)
class TalkingHeadParams:
    engine: str
    options: dict[str, Any]  # every key of TALKING_HEAD_DEFAULTS
    speech: TtsParams | None = None  # made from text: the speech stage's parameters


@dataclass(frozen=True)
class JobOutput:
    """What a run produced, ready to store: the main file and any others by role."""

    path: Path
    content_type: str
    duration_s: float
    size_bytes: int
    info: dict[str, Any] = field(default_factory=dict)  # shown with the result
    extra: dict[str, JobOutput] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookTarget:
    """A per-job webhook: checked (SSRF guard) at submit."""

    url: str = ""
    events: list[str] | None = None


# --------------------------------------------------------------------- submit


def tts_params_resolve(
    *, text: str, language: str | None, engine: str | None, format: str, speed: float,
    voice: VoicePrompt | None = None, instruct: str = "",
) -> TtsParams:
    """Pick the engine (default by language) and check it can do what was
    asked: the language, and every option (voice, instruct, speed). An option
    the engine cannot honour is refused here, never silently ignored. Uses
    only engine metadata: no model is loaded in the web process."""
    language = (language or (voice.language if voice else "") or "en").strip().lower()
    if not engine:
        if not registry.language_supported(language):
            raise ApplicationError("unsupported_language", f"No engine speaks language '{language}'.", details={"language": language})
        engine = registry.default_engine_for(language)
    engine_cls = _usable_engine(engine, kind=registry.TTS)
    if not engine_cls.supports_language(language):
        raise ApplicationError(
            "unsupported_language",
            f"Engine '{engine}' does not speak language '{language}'.",
            details={"engine": engine, "language": language},
        )
    requested = {"voice": voice is not None, "instruct": bool(instruct), "speed": speed != 1.0}
    _check_options(engine=engine, engine_cls=engine_cls, requested=requested)
    if voice is None and engine_cls.requires_voice:
        raise ApplicationError(
            "voice_required", f"Engine '{engine}' speaks only in a voice: pass voice_id.", status=422, details={"engine": engine}
        )
    if voice is not None and voice.status != VoicePrompt.Status.READY:
        raise ApplicationError(
            "voice_not_ready", f"The voice is {voice.status}; only a ready voice can be used.", status=409,
            details={"voice_id": str(voice.id), "status": voice.status},
        )
    return TtsParams(text=text, language=language, engine=engine, format=format, speed=speed, voice=voice, instruct=instruct)


def _usable_engine(engine: str, *, kind: str) -> Any:
    """The class of engine ``engine`` of this kind, if this deployment can run it."""
    try:
        engine_cls = registry.engine_class(engine, kind=kind)
    except UnknownEngine:
        what = "speech" if kind == registry.TTS else "talking-head"
        raise ApplicationError(
            "unknown_engine", f"Unknown {what} engine '{engine}'.", details={"engines": registry.engine_names(kind)}
        ) from None
    problem = engine_cls.configuration_problem()
    if problem:
        raise ApplicationError(
            "engine_not_configured", f"Engine '{engine}' is not available here: {problem}", status=422, details={"engine": engine}
        )
    return engine_cls


def _check_options(*, engine: str, engine_cls: Any, requested: dict[str, bool]) -> None:
    unsupported = sorted(option for option, asked in requested.items() if asked and option not in engine_cls.options)
    if unsupported:
        raise ApplicationError(
            "unsupported_option",
            f"Engine '{engine}' cannot honour: {', '.join(unsupported)}.",
            status=422,
            details={"engine": engine, "options": unsupported, "supported": sorted(engine_cls.options)},
        )


def talking_head_params_resolve(
    *, engine: str | None, options: dict[str, Any], text: str | None = None, language: str | None = None,
    voice: VoicePrompt | None = None, tts_engine: str | None = None,
) -> TalkingHeadParams:
    """Pick the video engine and check it honours every parameter asked for
    (a non-default value of an option it lacks is refused); with text, also
    resolve the speech stage like ``/v1/tts`` does."""
    engine = engine or settings.TALKING_HEAD_DEFAULT_ENGINE
    engine_cls = _usable_engine(engine, kind=registry.TALKING_HEAD)
    values = {**TALKING_HEAD_DEFAULTS, **options}
    requested = {option: values[option] != TALKING_HEAD_DEFAULTS[option] for option in TALKING_HEAD_ENGINE_OPTIONS}
    _check_options(engine=engine, engine_cls=engine_cls, requested=requested)
    if engine_cls.frame_rates is not None and values["fps"] not in engine_cls.frame_rates:
        raise ApplicationError(
            "unsupported_option", f"Engine '{engine}' renders at {', '.join(map(str, engine_cls.frame_rates))} fps only.",
            status=422, details={"engine": engine, "options": ["fps"], "supported_fps": list(engine_cls.frame_rates)},
        )
    speech = None
    if text is not None:
        speech = tts_params_resolve(text=text, language=language, engine=tts_engine, format="wav", speed=1.0, voice=voice)
    return TalkingHeadParams(engine=engine, options=values, speech=speech)


def _dedup_key(*, tenant: Tenant, kind: str, engine: str, inputs: dict[str, Any]) -> str:
    """Identical requests hash alike: text is compared with its whitespace
    collapsed (it is already NFC), everything else exactly."""
    normalized = {**inputs, "text": " ".join(str(inputs.get("text", "")).split())}
    material = json.dumps({"tenant": str(tenant.pk), "kind": kind, "engine": engine, "inputs": normalized}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def _dedup_source(*, tenant: Tenant, dedup_key: str, priority: str) -> Job | None:
    """A finished job whose output is kept for a while yet, else a job still
    being made (not itself waiting on another, and not of lower priority:
    a high-priority request must not wait behind a normal backlog)."""
    now = timezone.now()
    finished = Q(status=Status.SUCCEEDED, result_expires_at__gt=now + timedelta(seconds=settings.DEDUP_MIN_RESULT_LIFETIME_S))
    in_progress = Q(status__in=[Status.QUEUED, Status.RUNNING], dedup_of__isnull=True)
    if priority == Job.Priority.HIGH:
        in_progress &= Q(priority=Job.Priority.HIGH)
    candidates = list(Job.objects.filter(finished | in_progress, tenant=tenant, dedup_key=dedup_key).order_by("-created_at")[:20])
    succeeded = [job for job in candidates if job.status == Status.SUCCEEDED]
    return (succeeded or candidates or [None])[0]


def _check_quotas(*, tenant: Tenant, limits: TenantLimits) -> None:
    active = Job.objects.filter(tenant=tenant, status__in=[Status.QUEUED, Status.RUNNING]).count()
    if active >= limits.max_active_jobs:
        raise ApplicationError(
            "too_many_active_jobs", f"The tenant has {active} queued or running jobs; the limit is {limits.max_active_jobs}.",
            status=429, details={"active_jobs": active, "limit": limits.max_active_jobs},
        )
    if limits.monthly_seconds_quota:
        usage = usage_get(tenant=tenant)
        used = usage.audio_seconds + usage.video_seconds
        if used >= limits.monthly_seconds_quota:
            raise ApplicationError(
                "quota_exceeded", f"This month's {limits.monthly_seconds_quota} generated seconds are used up.",
                status=402, details={"used_seconds": round(used, 3), "quota_seconds": limits.monthly_seconds_quota, "period": usage.period},
            )


def job_submit_tts(
    *, tenant: Tenant, api_key: ApiKey | None, params: TtsParams, metadata: dict[str, Any], actor: str, ip: str | None,
    webhook: WebhookTarget | None = None, priority: str = Job.Priority.NORMAL, use_cache: bool = True,
) -> Job:
    """Create a speech job. An identical finished request of the tenant is
    reused at once (``cache_hit``, no engine run, no quota seconds); an
    identical one still running is joined. Otherwise the job queues, and the
    fair-share dispatcher hands it to the workers."""
    inputs = {"text": params.text, "language": params.language, "format": params.format, "speed": params.speed}
    if params.voice is not None:
        inputs["voice_id"] = str(params.voice.id)
    if params.instruct:
        inputs["instruct"] = params.instruct
    return _job_create(
        tenant=tenant, api_key=api_key, kind=Job.Kind.TTS, engine=params.engine, inputs=inputs, voice=params.voice,
        metadata=metadata, actor=actor, ip=ip, webhook=webhook, priority=priority, use_cache=use_cache,
    )


def job_submit_talking_head(
    *, tenant: Tenant, api_key: ApiKey | None, params: TalkingHeadParams, image: UploadedFile, audio: UploadedFile | None,
    metadata: dict[str, Any], actor: str, ip: str | None, webhook: WebhookTarget | None = None,
    priority: str = Job.Priority.NORMAL, use_cache: bool = True,
) -> Job:
    """Create a talking-head job from a portrait and either an audio file or
    the speech stage's parameters (text). The image is checked here (format,
    dimensions, decodable); the face and the audio in the worker's first
    stage. Inputs are stored under server-made keys before the job exists, so
    a worker never sees a job without them."""
    image_facts = image_check(image)
    audio_facts = audio_check(audio) if audio is not None else None
    inputs: dict[str, Any] = {"image": image_facts.public(), **params.options}
    speech = params.speech
    if audio_facts is not None:
        inputs["audio"] = audio_facts.public()
    elif speech is not None:
        inputs.update(text=speech.text, language=speech.language, tts_engine=speech.engine)
        if speech.voice is not None:
            inputs["voice_id"] = str(speech.voice.id)
    job_id = uuid.uuid4()
    files = {"image": (image, f"input-image.{image_facts.extension}")}
    if audio is not None:
        files["audio"] = (audio, "input-audio.bin")
    input_files = _inputs_store(tenant=tenant, job_id=job_id, files=files)
    try:
        job = _job_create(
            tenant=tenant, api_key=api_key, kind=Job.Kind.TALKING_HEAD, engine=params.engine, inputs=inputs,
            voice=speech.voice if speech is not None else None, metadata=metadata, actor=actor, ip=ip, webhook=webhook,
            priority=priority, use_cache=use_cache, job_id=job_id, input_files=input_files,
        )
    except BaseException:
        _files_delete(input_files.values())
        raise
    if job.cache_hit and job.status == Status.SUCCEEDED:  # born finished: its inputs are not needed
        _files_delete(input_files.values())
        Job.objects.filter(id=job.id).update(input_files={})
        job.input_files = {}
    return job


def _inputs_store(*, tenant: Tenant, job_id: Any, files: dict[str, tuple[UploadedFile, str]]) -> dict[str, str]:
    stored: dict[str, str] = {}
    try:
        for role, (upload, name) in files.items():
            upload.seek(0)
            key = f"tenants/{tenant.pk}/jobs/{job_id}/{name}"
            stored[role] = default_storage.save(key, File(upload, name=name))
    except storage_errors():
        logger.warning("storing job inputs failed", exc_info=True)
        _files_delete(stored.values())
        raise ApplicationError("service_unavailable", "Storage is unavailable; nothing was saved. Retry shortly.", status=503) from None
    return stored


def _files_delete(keys: Any) -> None:
    for key in keys:
        try:
            default_storage.delete(key)
        except Exception:  # left for purge_expired
            logger.warning("could not delete a stored file", extra={"key": key}, exc_info=True)


def _job_create(
    *, tenant: Tenant, api_key: ApiKey | None, kind: str, engine: str, inputs: dict[str, Any], voice: VoicePrompt | None,
    metadata: dict[str, Any], actor: str, ip: str | None, webhook: WebhookTarget | None, priority: str, use_cache: bool,
    job_id: Any = None, input_files: dict[str, str] | None = None,
) -> Job:
    webhook = webhook or WebhookTarget()
    limits = tenant_limits(tenant)
    if priority == Job.Priority.HIGH and not limits.allow_high_priority:
        raise ApplicationError("priority_not_allowed", "This tenant may not submit high-priority jobs.", status=403)
    # The voice's audio, not only its id, makes two requests identical.
    material = {**inputs, "voice_sha256": voice.content_sha256} if voice is not None else inputs
    dedup_key = _dedup_key(tenant=tenant, kind=kind, engine=engine, inputs=material) if use_cache else ""
    with transaction.atomic():
        # One tenant's submissions in turn, so quota checks are exact. SQLite's
        # IMMEDIATE transactions already serialize writers; Postgres locks the row.
        if connection.features.has_select_for_update:
            Tenant.objects.select_for_update().filter(pk=tenant.pk).exists()
        source = _dedup_source(tenant=tenant, dedup_key=dedup_key, priority=priority) if dedup_key else None
        if source is None or source.status != Status.SUCCEEDED:
            _check_quotas(tenant=tenant, limits=limits)  # a reused output costs nothing
        reuse = source is not None and source.status == Status.SUCCEEDED
        copied = _copied_result(source) if reuse else {}
        if reuse:
            copied["created_at"] = copied["started_at"]  # born finished: created = started = finished
        job = Job.objects.create(
            id=job_id or uuid.uuid4(), tenant=tenant, api_key=api_key, kind=kind, engine=engine, input=inputs, metadata=metadata,
            voice=voice, priority=priority, webhook_url=webhook.url, webhook_events=webhook.events, dedup_key=dedup_key,
            dedup_of=source, cache_hit=source is not None, input_files=input_files or {}, **copied,
        )
        audit_record(
            action="job.create", actor=actor, tenant=tenant, target=job, ip=ip,
            metadata={"kind": job.kind, "engine": job.engine, "cache_hit": job.cache_hit},
        )
        if reuse:
            usage_record(tenant_id=tenant.pk, cache_hits=1)
            transaction.on_commit(partial(_job_announce, job, fresh=True), robust=True)
        elif source is None:
            # Dispatch only once the row is visible to workers.
            # robust: the job is saved; if dispatch fails the reaper sends it.
            transaction.on_commit(partial(jobs_dispatch, tenant_id=tenant.pk, max_in_flight=limits.max_in_flight), robust=True)
        # else: it waits for its source, which finishes it (_followers_finish).
    return job


def _copied_result(source: Job) -> dict[str, Any]:
    """A finished job's output, for another job: the same stored object, no copy."""
    now = timezone.now()
    return {
        "status": Status.SUCCEEDED, "progress": 100, "stage": "done", "started_at": now, "finished_at": now,
        "result_key": source.result_key, "result_content_type": source.result_content_type,
        "result_duration_s": source.result_duration_s, "result_size_bytes": source.result_size_bytes,
        "result_expires_at": source.result_expires_at, "result_info": source.result_info, "result_files": source.result_files,
    }




def _followers_finish(source: Job) -> None:
    """The jobs that joined ``source`` end as it did: with its output, with its
    error, or (if it was canceled) they are dispatched to run themselves."""
    source.refresh_from_db()
    followers = list(Job.objects.filter(dedup_of=source, status=Status.QUEUED))
    if not followers:
        return
    if source.status == Status.SUCCEEDED:
        Job.objects.filter(id__in=[f.id for f in followers], status=Status.QUEUED).update(**_copied_result(source))
        usage_record(tenant_id=source.tenant_id, cache_hits=len(followers))
    elif source.status == Status.FAILED:
        Job.objects.filter(id__in=[f.id for f in followers], status=Status.QUEUED).update(
            status=Status.FAILED, stage="failed", finished_at=timezone.now(),
            error_code=source.error_code, error_message=source.error_message,
        )
    else:  # canceled or expired: the first follower runs, the others wait on it
        leader, *rest = sorted(followers, key=lambda follower: follower.created_at)
        Job.objects.filter(id=leader.id, status=Status.QUEUED).update(dedup_of=None, cache_hit=False)
        Job.objects.filter(id__in=[f.id for f in rest], status=Status.QUEUED).update(dedup_of=leader)
        jobs_dispatch(tenant_id=source.tenant_id)
        return
    for follower in followers:
        _job_announce(follower.id)


# ---------------------------------------------------------------- dispatch


def jobs_dispatch(*, tenant_id: Any, max_in_flight: int | None = None) -> int:
    """Fair share: hand the tenant's waiting jobs to the broker while fewer
    than ``max_in_flight`` of its jobs are there or running; high priority and
    older first. Called after a submit, when a job ends, and by the reaper. A
    burst of one tenant thus sits in the database, not in front of everyone
    else in the queue. Returns how many were sent."""
    if max_in_flight is None:
        max_in_flight = tenant_limits(Tenant.objects.get(pk=tenant_id)).max_in_flight
    in_flight = Job.objects.filter(tenant_id=tenant_id, status__in=[Status.QUEUED, Status.RUNNING], enqueued_at__isnull=False).count()
    free = max_in_flight - in_flight
    if free <= 0:
        return 0
    waiting = Job.objects.filter(tenant_id=tenant_id, status=Status.QUEUED, enqueued_at__isnull=True, dedup_of__isnull=True)
    sent = 0
    for job_id, priority, kind, resolution in waiting.order_by("priority", "created_at").values_list(
        "id", "priority", "kind", "input__resolution"
    )[:free]:
        # Mark first (conditionally), so concurrent dispatchers never send one job twice.
        if Job.objects.filter(id=job_id, enqueued_at__isnull=True).update(enqueued_at=timezone.now()):
            if _job_send(job_id, route=(kind, priority, resolution)):
                sent += 1
            else:
                Job.objects.filter(id=job_id).update(enqueued_at=None)
                break  # the broker is down: the reaper dispatches later
    return sent


def job_actor(*, kind: str, priority: str, resolution: int | None = None) -> Any:
    """The actor (and so the queue) a job goes to. Speech and video have
    their own queues, so a video backlog never delays speech; high priority
    has its own queue of each kind; with VIDEO_HIRES_MIN_RESOLUTION set,
    large videos go to "video-hires" (a pool of bigger machines)."""
    from jobs import actors

    if kind == Job.Kind.TALKING_HEAD:
        threshold = settings.VIDEO_HIRES_MIN_RESOLUTION
        if threshold and (resolution or 0) >= threshold:
            return actors.video_job_run_hires
        return actors.video_job_run_high if priority == Job.Priority.HIGH else actors.video_job_run
    return actors.tts_job_run_high if priority == Job.Priority.HIGH else actors.tts_job_run


def _job_send(job_id: Any, *, route: tuple[str, str, int | None] | None = None) -> bool:
    if route is None:  # a re-send: look it up
        route = Job.objects.filter(id=job_id).values_list("kind", "priority", "input__resolution").first()
        if route is None:
            return False
    kind, priority, resolution = route
    try:
        job_actor(kind=kind, priority=priority, resolution=resolution).send(str(job_id))
    except Exception:  # redis/dramatiq connection errors of every kind
        logger.warning("enqueue failed; the reaper will send it", extra={"job_id": str(job_id)}, exc_info=True)
        return False
    return True


def job_enqueue(*, job_id: Any) -> bool:
    """Send (again) a job that is already in flight: a message presumed lost,
    or a job whose worker died. If Redis is down nothing changes and the
    reaper tries again later: nothing is lost."""
    if not _job_send(job_id):
        return False
    Job.objects.filter(id=job_id).update(enqueued_at=timezone.now())
    return True


def job_cancel(*, job: Job, actor: str, ip: str | None) -> Job:
    """Queued jobs never start; a running job stops at its next progress
    point (its worker no longer owns the row) and cleans its temp files."""
    canceled = Job.objects.filter(id=job.id, status__in=[Status.QUEUED, Status.RUNNING]).update(
        status=Status.CANCELED, stage="canceled", finished_at=timezone.now()
    )
    job.refresh_from_db()
    if not canceled:
        raise ApplicationError(
            "job_not_cancelable", f"The job is {job.status}; only queued or running jobs can be canceled.",
            status=409, details={"status": job.status},
        )
    audit_record(action="job.cancel", actor=actor, tenant=job.tenant, target=job, ip=ip)
    _job_announce(job)
    _followers_finish(job)  # jobs that joined it run on their own now
    jobs_dispatch(tenant_id=job.tenant_id)  # a queued job in flight freed a slot
    return job


def job_retry(*, job: Job, actor: str, ip: str | None = None) -> Job:
    """Staff: run a failed or canceled job again from the start (a fresh
    set of attempts, its uploads if retention has not removed them)."""
    retried = Job.objects.filter(id=job.id, status__in=[Status.FAILED, Status.CANCELED]).update(
        status=Status.QUEUED, stage="queued", progress=0, attempts=0, error_code="", error_message="",
        enqueued_at=None, started_at=None, finished_at=None, heartbeat_at=None, dedup_of=None,
    )
    job.refresh_from_db()
    if not retried:
        raise ApplicationError("job_not_retryable", f"The job is {job.status}; only failed or canceled jobs can be retried.", status=409)
    audit_record(action="job.retry", actor=actor, tenant=job.tenant, target=job, ip=ip)
    _job_announce(job)
    jobs_dispatch(tenant_id=job.tenant_id)
    return job


def job_requeue(*, job: Job, actor: str, ip: str | None = None) -> Job:
    """Staff: put a stuck job back in its queue. A running job is taken from
    its worker (which stops at its next progress point and cannot store a
    result); a queued job's message is sent again (a duplicate is harmless:
    only one claim wins)."""
    if job.status == Status.RUNNING:
        moved = Job.objects.filter(id=job.id, status=Status.RUNNING, attempts=job.attempts).update(
            status=Status.QUEUED, stage="requeued", progress=0
        )
    else:
        moved = Job.objects.filter(id=job.id, status=Status.QUEUED).count()
    job.refresh_from_db()
    if not moved:
        raise ApplicationError("job_not_requeueable", f"The job is {job.status}; only queued or running jobs can be requeued.", status=409)
    audit_record(action="job.requeue", actor=actor, tenant=job.tenant, target=job, ip=ip)
    if job.enqueued_at is None:
        jobs_dispatch(tenant_id=job.tenant_id)  # waiting its fair-share turn
    else:
        job_enqueue(job_id=job.id)
    _job_announce(job)
    job.refresh_from_db()
    return job


# ------------------------------------------------------------------- events

_WEBHOOK_EVENT_BY_STATUS = {
    Status.RUNNING: "job.started",
    Status.SUCCEEDED: "job.succeeded",
    Status.FAILED: "job.failed",
    Status.CANCELED: "job.canceled",
}
# When each running job last sent a job.progress webhook (this process runs it).
_progress_webhook_sent: dict[Any, float] = {}


def _job_announce(job: Job | Any, *, fresh: bool = False) -> None:
    """Tell live streams and webhooks that the job changed status. Reads the
    row again unless ``fresh``: the caller's UPDATE made its copy stale.
    Never fails the job: events are best effort, the row is the record."""
    try:
        if not fresh:
            job = Job.objects.select_related("tenant").get(id=getattr(job, "id", job))
        body = job_representation(job)
        if job.is_terminal:
            metrics.increment(metrics.jobs_finished, kind=job.kind, status=job.status, error_code=job.error_code)
        events.job_event_append(job_id=job.id, event=events.DONE if job.is_terminal else events.STATUS, data=body)
        event_type = _WEBHOOK_EVENT_BY_STATUS.get(job.status)
        if event_type:
            event_publish(
                tenant=job.tenant, event_type=event_type, data=body, job=job,
                job_webhook_url=job.webhook_url, job_webhook_events=job.webhook_events,
            )
    except Exception:  # a database hiccup must not turn a finished job into a retry
        logger.warning("could not announce a job event", exc_info=True)


def _job_announce_progress(job: Job) -> None:
    events.job_event_append(
        job_id=job.id, event=events.PROGRESS, data={"id": str(job.id), "status": job.status, "progress": job.progress, "stage": job.stage}
    )
    now = time.monotonic()
    last_sent = _progress_webhook_sent.get(job.id)
    if last_sent is not None and now - last_sent < settings.WEBHOOK_PROGRESS_INTERVAL_S:
        return
    _progress_webhook_sent[job.id] = now
    try:
        event_publish(
            tenant=job.tenant, event_type="job.progress", data=job_representation(job), job=job,
            job_webhook_url=job.webhook_url, job_webhook_events=job.webhook_events,
        )
    except Exception:
        logger.warning("could not publish a progress webhook", exc_info=True)


# ------------------------------------------------------------------------ run


def job_claim(*, job_id: str) -> Job | None:
    """Move a job to running if it is queued, or running but abandoned (its
    worker's heartbeat stopped). Returns None when another worker has it.

    The claimed job's ``attempts`` is this run's ownership token: every later
    write filters on it, so a worker that was presumed dead (and replaced)
    can no longer touch the job."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S)
    abandoned = Q(status=Status.RUNNING, heartbeat_at__lt=stale_before)
    claimable = Q(status=Status.QUEUED) | (abandoned & Q(attempts__lt=settings.JOB_MAX_ATTEMPTS))
    claimed = Job.objects.filter(claimable, id=job_id).update(
        status=Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        stage="starting",
        progress=0,
    )
    if claimed:
        job = Job.objects.select_related("tenant").get(id=job_id)
        waited_since = job.enqueued_at or job.created_at
        metrics.observe(metrics.job_queue_wait_seconds, max(0.0, (now - waited_since).total_seconds()), kind=job.kind)
        _job_announce(job, fresh=True)
        return job
    # Only now (off the hot path: every UPDATE takes SQLite's write lock) look
    # for a job that took its worker down on every attempt (segfault, OOM
    # kill): it must not be handed to the next worker forever.
    lost = Job.objects.filter(abandoned, id=job_id, attempts__gte=settings.JOB_MAX_ATTEMPTS).update(
        status=Status.FAILED,
        stage="failed",
        finished_at=now,
        error_code="worker_lost",
        error_message=f"The worker running this job stopped responding on all {settings.JOB_MAX_ATTEMPTS} attempts.",
    )
    if lost:
        _job_announce(job_id)
    return None


def job_run(*, job_id: str) -> None:
    """Run one job to a terminal state, or hand it back for a retry."""
    job = job_claim(job_id=job_id)
    if job is None:
        heartbeat_at = Job.objects.filter(id=job_id, status=Status.RUNNING).values_list("heartbeat_at", flat=True).first()
        if heartbeat_at is not None:  # every claim sets it
            stale_in_s = (heartbeat_at + timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S) - timezone.now()).total_seconds()
            raise JobBusy(job_id, delay_ms=max(settings.JOB_RETRY_MIN_BACKOFF_MS, int(stale_in_s * 1000) + 500))
        logger.info("job finished or unknown; dropping message", extra={"job_id": job_id})
        return
    token = job_id_var.set(str(job.id))
    try:
        _job_execute(job)
    finally:
        job_id_var.reset(token)
        _progress_webhook_sent.pop(job.id, None)
        _after_job(job)


def _after_job(job: Job) -> None:
    """A slot of the tenant is free (unless the job is back for a retry): let
    its next waiting job in. Never raises: the reaper dispatches as well."""
    try:
        jobs_dispatch(tenant_id=job.tenant_id, max_in_flight=tenant_limits(job.tenant).max_in_flight)
    except Exception:
        logger.warning("dispatch after the job failed; the reaper will", exc_info=True)


def _job_execute(job: Job) -> None:
    elapsed, outcome = metrics.timer(), "retrying"  # JobRetry propagates to the actor
    try:
        outcome = _job_attempt(job)
    finally:
        metrics.observe(metrics.engine_run_seconds, elapsed(), kind=job.kind, engine=job.engine, outcome=outcome)


def _job_attempt(job: Job) -> str:
    """One attempt: engine, then storage. Returns how it ended (succeeded,
    failed, canceled) or raises JobRetry for another attempt."""
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    try:
        with tempfile.TemporaryDirectory(prefix="mynah-job-") as workdir, _heartbeat(job):
            make = _job_render if job.kind == Job.Kind.TALKING_HEAD else _job_speak
            output = make(job, Path(workdir))
            job_progress(job=job, percent=_ENGINE_PROGRESS_SHARE + 1, stage="storing")
            _job_store_result(job, output)
        return "succeeded"
    except Canceled:
        logger.info("job canceled while running")
        return "canceled"
    except (OperationalError, InterfaceError):
        # The database, not the engine: the message is retried (with backoff)
        # and the job, its heartbeat stale by then, claimed again.
        logger.warning("database unavailable during the job; its message will be retried", exc_info=True)
        raise
    except TimeLimitExceeded:
        _job_fail(job, "time_limit_exceeded", f"The job exceeded its time limit of {settings.JOB_TIME_LIMIT_S} s.")
    except EngineError as exc:
        if exc.permanent:
            _job_fail(job, exc.code, exc.message)
        else:
            _job_retry_or_fail(job, exc.code, exc.message)
    except storage_errors() as exc:
        logger.warning("storage or filesystem error", exc_info=True)
        _job_retry_or_fail(job, "storage_unavailable", f"Storage failed: {getattr(exc, 'strerror', None) or exc}")
    except Exception as exc:
        logger.exception("engine raised an unexpected error")
        _job_retry_or_fail(job, "engine_error", f"The engine failed: {type(exc).__name__}")
    return "failed"  # a retry raised JobRetry above


def _progress_between(job: Job, low: int, high: int):
    """A progress callback for one stage: the engine's 0-100 % mapped into low..high."""

    def report(percent: int, stage: str) -> None:
        job_progress(job=job, percent=low + (high - low) * max(0, min(percent, 100)) // 100, stage=stage)

    return report


def _job_speak(job: Job, workdir: Path) -> JobOutput:
    result = _speech_synthesize(job, workdir, _progress_between(job, 0, _ENGINE_PROGRESS_SHARE))
    return _speech_output(result)


def _speech_synthesize(job: Job, workdir: Path, report: Any, *, format: str | None = None) -> SpeechResult:
    engine_name = job.input.get("tts_engine", job.engine) if job.kind == Job.Kind.TALKING_HEAD else job.engine
    engine = registry.get_engine(engine_name)
    request = SpeechRequest(
        text=job.input["text"], language=job.input["language"], format=format or job.input["format"],
        speed=job.input.get("speed", 1.0), voice=_job_voice(job, workdir), instruct=job.input.get("instruct", ""),
    )
    return engine.run(request, report, workdir)


def _speech_output(result: SpeechResult) -> JobOutput:
    info: dict[str, Any] = {}
    if result.voice:
        voice = dict(result.voice)
        info = {"speaker_similarity": voice.pop("speaker_similarity"), "voice": voice}
    return JobOutput(result.path, result.content_type, result.duration_s, result.size_bytes, info=info)


def _job_render(job: Job, workdir: Path) -> JobOutput:
    """Talking head: check the portrait (the face), get the speech (the
    upload, or text through a TTS engine: a stage of this job whose audio is
    kept as a second result file), check the audio, render. Out of memory
    renders again at the next lower resolution (1024 -> 768 -> 512)."""
    from engines.video.base import TalkingHeadRequest
    from engines.video.inputs import check_audio, check_portrait

    job_progress(job=job, percent=1, stage="checking image")
    portrait = check_portrait(_job_input_file(job, "image", workdir))
    speech = None
    if "audio" in job.input_files:
        audio_path = _job_input_file(job, "audio", workdir)
        render_from = 5
    else:
        speech = _speech_synthesize(job, workdir, _progress_between(job, 2, 20), format="wav")
        audio_path, render_from = speech.path, 20
    job_progress(job=job, percent=render_from - 1, stage="checking audio")
    audio_duration = check_audio(audio_path, max_audio_s=settings.TALKING_HEAD_MAX_AUDIO_S)
    engine = registry.get_engine(job.engine)
    requested = job.input["resolution"]
    ladder = sorted((r for r in engine.resolutions if r <= requested), reverse=True) or [requested]
    options = {name: job.input[name] for name in TALKING_HEAD_DEFAULTS if name != "resolution"}
    fallbacks: list[dict[str, Any]] = []
    for step, resolution in enumerate(ladder):
        request = TalkingHeadRequest(
            image_path=workdir / "image", audio_path=audio_path, face=portrait.face, resolution=resolution,
            seed=int((job.dedup_key or job.id.hex)[:8], 16), **options,
        )
        try:
            result = engine.run(request, _progress_between(job, render_from, _ENGINE_PROGRESS_SHARE), workdir)
            break
        except EngineOutOfMemory as exc:
            fallbacks.append({"resolution": resolution, "error": exc.message})
            if step == len(ladder) - 1:
                raise
            logger.warning("out of memory; rendering at a lower resolution", extra={"resolution": resolution})
            job_progress(job=job, percent=render_from, stage=f"out of memory at {resolution} px; retrying at {ladder[step + 1]} px")
    info = {
        "width": result.width, "height": result.height, "fps": result.fps, "frames": result.frames,
        "resolution": resolution, "requested_resolution": requested, "audio_duration_s": audio_duration,
        "face": portrait.face.as_dict(), "faces_found": portrait.faces_found, "warnings": portrait.warnings,
    }
    if fallbacks:
        info["fallbacks"] = fallbacks
    extra = {"audio": _speech_output(speech)} if speech is not None else {}
    return JobOutput(result.path, result.content_type, result.duration_s, result.size_bytes, info=info, extra=extra)


def _job_input_file(job: Job, role: str, workdir: Path) -> Path:
    """Copy an uploaded input from storage into the job's workdir (named by
    role: no client text in the path)."""
    key = job.input_files.get(role)
    if not key:
        raise PermanentEngineError(f"The job's {role} input is missing.", code="input_missing")
    target = workdir / role
    try:
        with default_storage.open(key, "rb") as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, length=1024 * 1024)
    except FileNotFoundError:
        raise PermanentEngineError(f"The job's {role} input was deleted from storage.", code="input_missing") from None
    return target


def _job_voice(job: Job, workdir: Path) -> VoiceReference | None:
    if not job.input.get("voice_id"):
        return None
    voice = VoicePrompt.objects.filter(id=job.input["voice_id"], tenant_id=job.tenant_id, status=VoicePrompt.Status.READY).first()
    if voice is None:
        raise PermanentEngineError("The job's voice was deleted before the job ran.", code="voice_deleted")
    return voice_reference(voice=voice, workdir=workdir)


def _owned(job: Job) -> Any:
    """The job's row, if this run still owns it (running, same attempt)."""
    return Job.objects.filter(id=job.id, status=Status.RUNNING, attempts=job.attempts)


def job_progress(*, job: Job, percent: int, stage: str) -> None:
    """Record progress (and a heartbeat). Raises Canceled when this run no
    longer owns the job (canceled, or taken over), which stops the engine at
    its next progress point."""
    percent = max(0, min(percent, 99))
    stage = stage[: Job._meta.get_field("stage").max_length]  # engines word their own stages
    updated = _owned(job).update(progress=percent, stage=stage, heartbeat_at=timezone.now())
    if not updated:
        raise Canceled(str(job.id))
    job.progress, job.stage = percent, stage
    _job_announce_progress(job)


def _job_store_result(job: Job, output: JobOutput) -> None:
    stored: list[str] = []
    try:
        main_key = _store_file(job, "output", output.path, stored)
        result_files = {
            role: {"key": _store_file(job, role, extra.path, stored), "content_type": extra.content_type,
                   "duration_s": extra.duration_s, "size_bytes": extra.size_bytes, **extra.info}
            for role, extra in output.extra.items()
        }
    except BaseException:
        _files_delete(stored)
        raise
    now = timezone.now()
    finished = _owned(job).update(
        status=Status.SUCCEEDED,
        progress=100,
        stage="done",
        finished_at=now,
        heartbeat_at=now,
        error_code="",
        error_message="",
        result_key=main_key,
        result_content_type=output.content_type,
        result_duration_s=output.duration_s,
        result_size_bytes=output.size_bytes,
        result_expires_at=now + timedelta(days=tenant_limits(job.tenant).result_retention_days),
        result_info=output.info,
        result_files=result_files,
    )
    if not finished:  # canceled or taken over while storing: no orphan objects
        _files_delete(stored)
        raise Canceled(str(job.id))
    _job_announce(job)
    try:  # the job has succeeded: nothing below may turn it into a retry
        if job.kind == Job.Kind.TALKING_HEAD:
            usage_record(tenant_id=job.tenant_id, video_seconds=output.duration_s, jobs=1)
        else:
            usage_record(tenant_id=job.tenant_id, audio_seconds=output.duration_s, jobs=1)
        _followers_finish(job)
    except Exception:  # followers: the reaper finishes them; usage: logged
        logger.exception("bookkeeping after success failed")
    logger.info("job succeeded", extra={"duration_s": output.duration_s, "size_bytes": output.size_bytes})


def _store_file(job: Job, role: str, path: Path, stored: list[str]) -> str:
    """Server-generated keys: no client-supplied text ever reaches a storage
    path. One key per attempt, so a replaced worker can never overwrite or
    delete the object of the attempt that owns the job."""
    key = f"tenants/{job.tenant_id}/jobs/{job.id}/{role}-{job.attempts}.{path.suffix.lstrip('.')}"
    with path.open("rb") as handle:
        stored.append(default_storage.save(key, File(handle, name=key)))
    return stored[-1]


def _job_fail(job: Job, code: str, message: str) -> None:
    failed = _owned(job).update(
        status=Status.FAILED, stage="failed", finished_at=timezone.now(), error_code=code, error_message=message[:2000]
    )
    logger.warning("job failed", extra={"error_code": code})
    if failed:
        _job_announce(job)
        try:
            _followers_finish(job)
        except Exception:  # the reaper finishes them
            logger.exception("could not finish the jobs waiting on this one")


def _job_retry_or_fail(job: Job, code: str, message: str) -> None:
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        _job_fail(job, code, f"{message} (gave up after {job.attempts} attempts)")
        return
    requeued = _owned(job).update(status=Status.QUEUED, stage="retrying", error_code=code, error_message=message[:2000])
    if requeued:
        logger.warning("transient failure; retrying", extra={"error_code": code, "attempt": job.attempts})
        _job_announce(job)
        raise JobRetry(code)


@contextmanager
def _heartbeat(job: Job) -> Iterator[None]:
    """Refresh ``heartbeat_at`` in the background while the job runs, so a job
    whose worker died is recognizable even during a long engine call."""
    stop = threading.Event()
    interval = max(1.0, settings.JOB_HEARTBEAT_TIMEOUT_S / 4)

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    _owned(job).update(heartbeat_at=timezone.now())
                except Exception:  # e.g. "database is locked": try again next beat
                    logger.warning("heartbeat write failed", exc_info=True)
                    connection.close()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


# ------------------------------------------------------------------- repair


def jobs_resend_unsent(*, older_than_s: float = 10.0) -> int:
    """Re-send queued jobs whose message never reached Redis, and queued jobs
    sent long ago whose message may have been lost since (dead-lettered after
    database errors, or cut from Redis's last second of append-only log).
    Claims are idempotent, so a duplicate message is harmless; ``enqueued_at``
    is refreshed on each send so a job is re-sent at most once per period."""
    now = timezone.now()
    waiting = Job.objects.filter(
        status=Status.QUEUED, enqueued_at__isnull=True, dedup_of__isnull=True, created_at__lt=now - timedelta(seconds=older_than_s)
    )
    tenant_ids = waiting.order_by().values_list("tenant_id", flat=True).distinct()[:1000]
    sent = sum(jobs_dispatch(tenant_id=tenant_id) for tenant_id in tenant_ids)
    lost = Job.objects.filter(status=Status.QUEUED, enqueued_at__lt=now - timedelta(seconds=settings.JOB_RESEND_QUEUED_AFTER_S))
    sent += sum(job_enqueue(job_id=job_id) for job_id in lost.values_list("id", flat=True)[:1000])
    # Jobs that joined an identical job which ended before they were saved.
    orphaned = Job.objects.filter(status=Status.QUEUED, dedup_of__status__in=Job.TERMINAL).values_list("dedup_of_id", flat=True)
    for source_id in set(orphaned[:1000]):
        _followers_finish(Job.objects.get(id=source_id))
    IdempotencyRecord.objects.filter(expires_at__lte=now).delete()
    return sent


def jobs_requeue_abandoned() -> int:
    """Send running jobs whose heartbeat stopped (dead worker) back to the queue."""
    stale_before = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_S)
    # Sent again at most once per heartbeat timeout (job_enqueue stamps enqueued_at).
    abandoned = Job.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale_before).filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale_before)
    )
    job_ids = list(abandoned.values_list("id", flat=True)[:1000])
    for job_id in job_ids:
        job_enqueue(job_id=job_id)  # job_claim accepts the stale running job
    close_old_connections()
    return len(job_ids)


def jobs_stop_overdue() -> int:
    """Running jobs past their time limit although their worker still beats
    (an engine stuck in native code, where Dramatiq's time limit cannot
    interrupt it): retried while attempts remain, else failed. The stuck run
    no longer owns the job, so it stops at its next progress point and can
    never store a result."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.JOB_TIME_LIMIT_S + settings.JOB_OVERDUE_GRACE_S)
    message = f"The job exceeded its time limit of {settings.JOB_TIME_LIMIT_S} s."
    stopped = 0
    for job_id, attempts in Job.objects.filter(status=Status.RUNNING, started_at__lt=cutoff).values_list("id", "attempts")[:1000]:
        owned = Job.objects.filter(id=job_id, status=Status.RUNNING, attempts=attempts, started_at__lt=cutoff)
        if attempts >= settings.JOB_MAX_ATTEMPTS:
            changed = owned.update(
                status=Status.FAILED, stage="failed", finished_at=now, error_code="time_limit_exceeded",
                error_message=f"{message} (gave up after {attempts} attempts)",
            )
        else:
            changed = owned.update(status=Status.QUEUED, stage="retrying", error_code="time_limit_exceeded", error_message=message)
            if changed:
                job_enqueue(job_id=job_id)
        if changed:
            stopped += 1
            logger.warning("job over its time limit; stopped", extra={"job_id": str(job_id), "attempt": attempts})
            _job_announce(job_id)
            if attempts >= settings.JOB_MAX_ATTEMPTS:
                _followers_finish(Job.objects.get(id=job_id))
    return stopped

