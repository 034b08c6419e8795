"""Creating jobs: quotas, stored inputs, dedup, and the dispatch on commit."""

from __future__ import annotations

import math
import uuid
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_event
from core.errors import ApplicationError
from core.group_commit import in_shared_transaction
from core.idempotency import idempotency_claim_link
from core.rows import prepared_row_insert, row_insert, row_prepare
from jobs.models import Job
from jobs.selectors import active_job_count
from jobs.services.announce import job_announce
from jobs.services.audio_publish import audio_stream_request
from jobs.services.dedup import copied_result, dedup_key, dedup_source
from jobs.services.dispatch import jobs_dispatch_soon
from jobs.services.files import files_delete, job_inputs_store
from jobs.services.params import JobSize, TalkingHeadParams, TtsParams, WebhookTarget, talking_head_size, tts_size
from jobs.uploads import audio_check, image_check
from tenants.limits import TenantLimits, tenant_limits
from tenants.models import ApiKey, Tenant
from tenants.selectors import usage_get
from tenants.services import usage_record
from voices.models import VoicePrompt

Status = Job.Status


def job_submit_tts(
    *,
    tenant: Tenant,
    api_key: ApiKey | None,
    params: TtsParams,
    metadata: dict[str, Any],
    actor: str,
    ip: str | None,
    webhook: WebhookTarget | None = None,
    priority: str = Job.Priority.NORMAL,
    use_cache: bool = True,
    stream: bool = False,
    cancel_on_disconnect: bool = False,
) -> Job:
    """Create a speech job. An identical finished request of the tenant is
    reused at once (``cache_hit``, no engine run, no quota seconds); an
    identical one still running is joined. Otherwise the job queues, and the
    fair-share dispatcher hands it to the workers.

    ``stream``: a client will read the audio while it is made
    (jobs/audio_stream.py), so the worker publishes it from the first
    sentence; not part of what the request is (a streamed and a plain
    identical request dedup to each other). ``cancel_on_disconnect``: a
    client that stops reading that stream before its end cancels the job."""
    inputs: dict[str, Any] = {"text": params.text, "language": params.language, "format": params.format, "speed": params.speed}
    if params.voice is not None:
        inputs["voice_id"] = str(params.voice.id)
        if params.voice_matching != "auto":  # absent means the default: old identical requests stay identical
            inputs["voice_matching"] = params.voice_matching
    if params.instruct:
        inputs["instruct"] = params.instruct
    job = _job_create(
        tenant=tenant,
        api_key=api_key,
        kind=Job.Kind.TTS,
        engine=params.engine,
        inputs=inputs,
        voice=params.voice,
        metadata=metadata,
        actor=actor,
        ip=ip,
        webhook=webhook,
        priority=priority,
        use_cache=use_cache,
        size=tts_size(params),
    )
    if stream and job.status in Job.ACTIVE:
        audio_stream_request(job_id=job.id, source_id=job.dedup_of_id or job.id, cancel_on_disconnect=cancel_on_disconnect)
    return job


def job_submit_talking_head(
    *,
    tenant: Tenant,
    api_key: ApiKey | None,
    params: TalkingHeadParams,
    image: Any,
    audio: Any | None,
    metadata: dict[str, Any],
    actor: str,
    ip: str | None,
    webhook: WebhookTarget | None = None,
    priority: str = Job.Priority.NORMAL,
    use_cache: bool = True,
) -> Job:
    """Create a talking-head job from a portrait (an uploaded file) and either
    an audio file or the speech stage's parameters (text). The image is
    checked here (format, dimensions, decodable); the face and the audio in
    the worker's first stage. Inputs are stored under server-made keys before
    the job exists, so a worker never sees a job without them."""
    image_facts = image_check(image)
    audio_facts = audio_check(audio) if audio is not None else None
    size = talking_head_size(params, audio_size_bytes=audio_facts.size_bytes if audio_facts is not None else None)
    _check_size(tenant=tenant, size=size)  # before storing the uploads
    inputs: dict[str, Any] = {"image": image_facts.public(), **params.options}
    speech = params.speech
    if audio_facts is not None:
        inputs["audio"] = audio_facts.public()
    elif speech is not None:
        inputs.update(text=speech.text, language=speech.language, tts_engine=speech.engine)
        if speech.voice is not None:
            inputs["voice_id"] = str(speech.voice.id)
            if speech.voice_matching != "auto":
                inputs["voice_matching"] = speech.voice_matching
    job_id = uuid.uuid4()
    files = {"image": (image, f"input-image.{image_facts.extension}")}
    if audio is not None:
        files["audio"] = (audio, "input-audio.bin")
    input_files = job_inputs_store(tenant_id=tenant.pk, job_id=job_id, files=files)
    try:
        job = _job_create(
            tenant=tenant,
            api_key=api_key,
            kind=Job.Kind.TALKING_HEAD,
            engine=params.engine,
            inputs=inputs,
            voice=speech.voice if speech is not None else None,
            metadata=metadata,
            actor=actor,
            ip=ip,
            webhook=webhook,
            priority=priority,
            use_cache=use_cache,
            size=size,
            job_id=job_id,
            input_files=input_files,
        )
    except BaseException:
        files_delete(input_files.values())
        raise
    if job.cache_hit and job.status == Status.SUCCEEDED:  # born finished: its inputs are not needed
        files_delete(input_files.values())
        Job.objects.filter(id=job.id).update(input_files={})
        job.input_files = {}
    return job


def _job_create(
    *,
    tenant: Tenant,
    api_key: ApiKey | None,
    kind: str,
    engine: str,
    inputs: dict[str, Any],
    voice: VoicePrompt | None,
    metadata: dict[str, Any],
    actor: str,
    ip: str | None,
    webhook: WebhookTarget | None,
    priority: str,
    use_cache: bool,
    size: JobSize,
    job_id: Any = None,
    input_files: dict[str, str] | None = None,
) -> Job:
    webhook = webhook or WebhookTarget()
    limits = tenant_limits(tenant)
    _check_size(tenant=tenant, size=size, limits=limits)
    if priority == Job.Priority.HIGH and not limits.allow_high_priority:
        raise ApplicationError("priority_not_allowed", "This tenant may not submit high-priority jobs.", status=403)
    # The voice's audio, not only its id, makes two requests identical.
    material = {**inputs, "voice_sha256": voice.content_sha256} if voice is not None else inputs
    key = dedup_key(tenant=tenant, kind=kind, engine=engine, inputs=material) if use_cache else ""
    fields: dict[str, Any] = {
        "id": job_id or uuid.uuid4(),
        "tenant": tenant,
        "api_key": api_key,
        "kind": kind,
        "engine": engine,
        "input": inputs,
        "metadata": metadata,
        "voice": voice,
        "priority": priority,
        "webhook_url": webhook.url,
        "webhook_events": webhook.events,
        "dedup_key": key,
        "input_files": input_files or {},
        "cost": size.cost,
    }

    def audited(job: Job) -> AuditEvent:
        return audit_event(
            action="job.create",
            actor=actor,
            tenant=tenant,
            target=job,
            ip=ip,
            metadata={"kind": job.kind, "engine": job.engine, "cache_hit": job.cache_hit},
        )

    # The usual job (no identical one to reuse or join) and its audit record
    # are built and prepared here, before the shared transaction: there only
    # their INSERTs run, while the writer lock is held.
    fresh = Job(**fields)
    fresh_row = row_prepare(fresh)
    fresh_audit_row = row_prepare(audited(fresh))

    def create() -> Job:
        source = dedup_source(tenant=tenant, dedup_key=key, priority=priority) if key else None
        reuse = source is not None and source.status == Status.SUCCEEDED
        # Refusals first, before anything is written: on SQLite a unit that
        # refused after a write would fail its whole batch (core.group_commit).
        if not reuse:  # a reused output costs nothing: no quota to check
            _check_quotas(tenant=tenant, limits=limits)
        # The request's Idempotency-Key answers with this job from now on,
        # even if its instance dies before the response is recorded.
        idempotency_claim_link(fields["id"])
        if source is None:
            job = prepared_row_insert(fresh_row)
            prepared_row_insert(fresh_audit_row)
        else:
            job = _job_joining(fields, source=source, reuse=reuse)
            row_insert(job)
            row_insert(audited(job))
        if reuse:
            usage_record(tenant_id=tenant.pk, cache_hits=1)
            transaction.on_commit(partial(job_announce, job, fresh=True), robust=True)
        elif source is None:
            # Dispatch only once the row is visible to workers.
            # robust: the job is saved; if dispatch fails the repair sweep sends it.
            transaction.on_commit(partial(jobs_dispatch_soon, tenant_id=tenant.pk, limits=limits), robust=True)
        # else: it waits for its source, which finishes it (followers_finish).
        return job

    # The tenant's submissions take turns from the start of the transaction
    # to its commit: quota checks are exact, and of two identical requests
    # the second finds the first (in-flight coalescing stays exact; dedup
    # keys are per tenant). A named lock, not a row lock: nothing a worker
    # does waits on it (a FOR UPDATE of the tenant row conflicted with the
    # KEY SHARE lock of a worker's foreign key check, and Postgres found
    # deadlocks: issue "fast intake"). The transaction is shared with the
    # process's other submissions (core.group_commit).
    return in_shared_transaction(create, locks=[_tenant_turn(tenant)])


def _job_joining(fields: dict[str, Any], *, source: Job, reuse: bool) -> Job:
    """The job of a request identical to ``source``: born finished with its
    output (``reuse``), or waiting for it to finish."""
    copied = copied_result(source) if reuse else {}
    if reuse:
        copied["created_at"] = copied["started_at"]  # born finished: created = started = finished
    return Job(**fields, dedup_of=source, cache_hit=True, **copied)


def _check_size(*, tenant: Tenant, size: JobSize, limits: TenantLimits | None = None) -> None:
    """422 ``job_too_large`` when the request would make more than the
    tenant's ``max_job_duration_s`` (the worker also stops one whose output
    passes it, whatever the estimate said)."""
    limit = (limits or tenant_limits(tenant)).max_job_duration_s
    estimate = size.estimated_duration_s
    if estimate is not None and estimate > limit:
        raise ApplicationError(
            "job_too_large",
            f"This request would make about {estimate:g} s of audio; the limit is {limit} s per job. "
            "Split the text into several jobs, and check that `language` is the text's language "
            "(characters of another script are read out one by one).",
            status=422,
            details={"estimated_duration_s": estimate, "limit_s": limit},
        )


def _tenant_turn(tenant: Tenant) -> str:
    """The named lock a tenant's submissions take turns on."""
    return f"tenant-submissions:{tenant.pk}"


def _check_quotas(*, tenant: Tenant, limits: TenantLimits) -> None:
    """Run holding the tenant's turn, before the new job is written: the
    count is exact (the tenant's other submissions wait for this one's
    commit, and those earlier in the same shared transaction are counted)."""
    active = active_job_count(tenant_id=tenant.pk)
    if active >= limits.max_active_jobs:
        raise ApplicationError(
            "too_many_active_jobs",
            f"The tenant has {active} queued or running jobs; the limit is {limits.max_active_jobs}.",
            status=429,
            details={"active_jobs": active, "limit": limits.max_active_jobs},
            retry_after_s=_active_slot_retry_after_s(tenant=tenant),
        )
    if limits.monthly_seconds_quota:
        usage = usage_get(tenant=tenant)
        used = usage.audio_seconds + usage.video_seconds
        if used >= limits.monthly_seconds_quota:
            raise ApplicationError(
                "quota_exceeded",
                f"This month's {limits.monthly_seconds_quota} generated seconds are used up.",
                status=402,
                details={"used_seconds": round(used, 3), "quota_seconds": limits.monthly_seconds_quota, "period": usage.period},
            )


# Retry-After for too_many_active_jobs: when one of the tenant's jobs is
# likely to finish and free a slot.
_RETRY_AFTER_DEFAULT_S = 5  # no run times to go by yet
_RETRY_AFTER_MAX_S = 60  # check back at least this often, whatever the estimate
_RETRY_AFTER_SAMPLE = 20


def _active_slot_retry_after_s(*, tenant: Tenant) -> int:
    """The median run time of the tenant's last finished jobs (how long a
    slot stays taken), less how long its oldest running job has already
    run; 1-60 s. Only on the refusal path: two indexed queries."""
    recent = (
        Job.objects.filter(tenant=tenant, status=Status.SUCCEEDED, cache_hit=False, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-created_at", "-id")
        .values_list("started_at", "finished_at")[:_RETRY_AFTER_SAMPLE]
    )
    durations = sorted((finished - started).total_seconds() for started, finished in recent if started and finished)
    if not durations:
        return _RETRY_AFTER_DEFAULT_S
    typical = durations[len(durations) // 2]
    oldest_start = (
        Job.objects.filter(tenant=tenant, status=Status.RUNNING, started_at__isnull=False)
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    if oldest_start is not None:
        typical -= (timezone.now() - oldest_start).total_seconds()
    return max(1, min(_RETRY_AFTER_MAX_S, math.ceil(typical)))
