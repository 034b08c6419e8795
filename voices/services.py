"""Voice writes: upload, analysis (in a worker), deletion.

The web process only stores the upload under a server-generated key and
queues its analysis: decoding untrusted media (FFmpeg) and the torch models
(silero-vad, resemblyzer) run in workers. The upload waits a bounded time
for the verdict, so a client usually gets the finished voice, or the
rejection with its code, in the same response; served by config.asgi that
wait is a coroutine on the event loop, not a thread (voices.waiting).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import redis
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import close_old_connections, transaction
from django.utils import timezone

from audit.services import audit_record
from core.context import request_id_var
from core.errors import ApplicationError, NotFound
from core.idempotency import idempotency_claim_link
from core.models import IdempotencyRecord
from core.redis import redis_client
from core.responses import error_body
from core.storage import storage_download, storage_errors
from engines.tts.base import VoiceReference
from tenants.models import Tenant
from voices import routing, waiting
from voices.models import VoicePrompt
from voices.representation import voice_representation

logger = logging.getLogger(__name__)
Status = VoicePrompt.Status


def _voice_dir(voice: VoicePrompt) -> str:
    return f"tenants/{voice.tenant_id}/voices/{voice.id}"


def _notice_client() -> redis.Redis:
    return redis_client(socket_timeout=waiting.NOTICE_BLOCK_MAX_S + 5, socket_connect_timeout=1.0)


# ---------------------------------------------------------------- web side


def voice_create(
    *, tenant: Tenant, upload: UploadedFile, name: str, language: str, transcript: str, actor: str, ip: str | None
) -> VoicePrompt:
    size = upload.size or 0  # Django's parsers always set it; the stubs allow None
    if size > settings.VOICE_MAX_UPLOAD_BYTES:
        raise ApplicationError(
            "file_too_large",
            f"The audio file is {size} bytes; the limit is {settings.VOICE_MAX_UPLOAD_BYTES}.",
            status=413,
            details={"size_bytes": size, "limit_bytes": settings.VOICE_MAX_UPLOAD_BYTES},
        )
    if size == 0:
        raise ApplicationError("audio_unreadable", "The audio file is empty.", status=422)
    count = VoicePrompt.objects.filter(tenant=tenant).count()
    if count >= settings.VOICE_MAX_PER_TENANT:
        raise ApplicationError(
            "too_many_voices",
            f"The tenant has {count} voices; the limit is {settings.VOICE_MAX_PER_TENANT}. Delete some first.",
            status=409,
            details={"voices": count, "limit": settings.VOICE_MAX_PER_TENANT},
        )
    voice = VoicePrompt(tenant=tenant, name=name, language=language, transcript=transcript, upload_size_bytes=size)
    # The client's file name and content type never reach a path: FFmpeg
    # identifies the format from the bytes.
    try:
        voice.upload_key = default_storage.save(f"{_voice_dir(voice)}/upload.bin", File(upload, name="upload.bin"))
    except storage_errors():
        logger.warning("storing a voice upload failed", exc_info=True)
        raise ApplicationError("service_unavailable", "Storage is unavailable; nothing was saved. Retry shortly.", status=503) from None
    try:
        with transaction.atomic():
            voice.save(force_insert=True)
            idempotency_claim_link(voice.id)  # the request's Idempotency-Key answers with this voice
            audit_record(action="voice.create", actor=actor, tenant=tenant, target=voice, ip=ip, metadata={"size_bytes": upload.size})
            transaction.on_commit(partial(_analysis_send, voice.id), robust=True)
    except Exception:
        _upload_discard(voice.upload_key)
        raise  # the original error, whatever the cleanup met
    return voice


def _upload_discard(key: str) -> None:
    """Best-effort removal of an upload whose voice was not saved. A failure
    here is logged, never raised: it must not replace the error that made
    the upload useless (the orphan sweep in purge_expired removes it later)."""
    try:
        default_storage.delete(key)
    except Exception:
        logger.warning("could not delete the upload of a voice that was not saved", extra={"key": key}, exc_info=True)


def _analysis_send(voice_id: object) -> None:
    routing.send(routing.VOICE_ANALYZE, str(voice_id))


def voice_wait_analyzed(*, voice: VoicePrompt, timeout_s: float | None = None) -> VoicePrompt:
    """Wait (bounded) for the worker's verdict, in this thread: the plain
    WSGI path (served by config.asgi the wait runs on the event loop, see
    voices.asgi). A voice the worker rejected is removed and its code raised
    (422): it never existed for the client. Past the wait, or with the
    tenant's waiting slots all taken (``VOICE_ANALYSIS_WAITING_PER_TENANT``),
    the voice is returned still ``processing``; its verdict then shows on
    GET, where a rejected voice stays visible as ``failed``."""
    timeout_s = settings.VOICE_ANALYSIS_WAIT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    slot = waiting.slot_take(tenant_id=voice.tenant_id, hold_s=timeout_s)
    try:
        while slot is not None:
            _voice_refresh(voice)
            remaining = deadline - time.monotonic()
            if voice.status != Status.PROCESSING or remaining <= 0:
                break
            _wait_for_notice(voice.id, remaining)
    finally:
        if slot is not None:
            waiting.slot_release(slot)
    return _voice_verdict(voice)


def _voice_refresh(voice: VoicePrompt) -> None:
    try:
        voice.refresh_from_db()
    except VoicePrompt.DoesNotExist:  # deleted by another request meanwhile
        raise NotFound("Voice not found.") from None


def _voice_verdict(voice: VoicePrompt) -> VoicePrompt:
    """The voice as the upload answers it: rejected -> removed, 422."""
    _voice_refresh(voice)
    if voice.status == Status.FAILED:
        code, message = voice.error_code, voice.error_message
        _voice_remove(voice)
        raise ApplicationError(code, message, status=422)
    return voice


def voice_upload_settle(*, voice_id: UUID, tenant_id: UUID, idempotency_key: str | None, request_id: str) -> tuple[int, dict[str, Any]]:
    """The upload's final answer after its wait on the event loop
    (voices.asgi): status and body, as the WSGI path would have answered.

    The view already recorded its ``processing`` answer for the request's
    Idempotency-Key; it is brought in line with what the client gets now: the
    analysed voice replaces it, a rejection releases the key (failed requests
    are not recorded, so the same key may be retried)."""
    close_old_connections()  # a pool thread outside a request: no stale connection
    token = request_id_var.set(request_id)
    try:
        try:
            voice = _voice_verdict(VoicePrompt(id=voice_id, tenant_id=tenant_id))
        except ApplicationError as exc:
            status, body = exc.status_code, error_body(exc.code, exc.message, exc.details)
        else:
            status, body = 201, voice_representation(voice)
        if idempotency_key is not None:
            _idempotent_answer_replace(tenant_id=tenant_id, key=idempotency_key, voice_id=voice_id, body=body if status < 400 else None)
        return status, body
    finally:
        request_id_var.reset(token)
        close_old_connections()


def _idempotent_answer_replace(*, tenant_id: UUID, key: str, voice_id: UUID, body: dict[str, Any] | None) -> None:
    """The key's recorded 201 for this voice: replaced by ``body``, or released (None)."""
    record = IdempotencyRecord.objects.filter(tenant_id=tenant_id, key=key, response_status=201).first()
    if record is None or not isinstance(record.response_body, dict) or record.response_body.get("id") != str(voice_id):
        return
    if body is None:
        record.delete()
    else:
        IdempotencyRecord.objects.filter(pk=record.pk).update(response_body=body)


def _wait_for_notice(voice_id: object, timeout_s: float) -> None:
    """Block on the worker's Redis notice; poll slowly if Redis is down."""
    try:
        _notice_client().blpop([waiting.notice_key(voice_id)], timeout=max(1, min(int(timeout_s), waiting.NOTICE_BLOCK_MAX_S)))
    except redis.RedisError:
        time.sleep(min(0.5, timeout_s))


def voices_resend_stuck(*, older_than_s: float = 60.0) -> int:
    """Re-queue the analysis of voices still processing after ``older_than_s``
    (their message was lost: Redis down at upload, a worker killed). Analysis
    is idempotent: only the first verdict is recorded."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stuck = list(VoicePrompt.objects.filter(status=Status.PROCESSING, created_at__lt=cutoff).values_list("id", flat=True)[:500])
    for voice_id in stuck:
        _analysis_send(voice_id)
    return len(stuck)


def voice_delete(*, voice: VoicePrompt, actor: str, ip: str | None) -> None:
    audit_record(action="voice.delete", actor=actor, tenant=voice.tenant, target=voice, ip=ip, metadata={"name": voice.name})
    _voice_remove(voice)


def _voice_remove(voice: VoicePrompt) -> None:
    """Row first: a job that still needs the prompt then fails with
    ``voice_deleted`` instead of finding half a voice."""
    keys = [key for key in (voice.upload_key, voice.prompt_key) if key]
    voice.delete()
    for key in keys:
        try:
            default_storage.delete(key)
        except storage_errors():  # an orphan object; purge_expired sweeps the prefix
            logger.warning("could not delete a voice file", extra={"key": key}, exc_info=True)


# -------------------------------------------------------------- worker side


def voice_analyze(*, voice_id: str) -> None:
    """Decode, detect speech, trim, normalize, embed and score one upload.
    Rejections are final (``failed`` with a stable code); storage errors
    raise so Dramatiq retries; a bug fails the voice as ``analysis_failed``."""
    from engines.voice.prompt import PromptRejected

    voice = VoicePrompt.objects.filter(id=voice_id, status=Status.PROCESSING).first()
    if voice is None:
        return  # deleted, or already analysed (a redelivered message)
    try:
        with tempfile.TemporaryDirectory(prefix="mynah-voice-") as workdir:
            _voice_analyze_in(voice, Path(workdir))
    except PromptRejected as exc:
        _voice_finish(voice, status=Status.FAILED, error_code=exc.code, error_message=exc.message)
    except storage_errors():
        logger.warning("storage error while analysing a voice; retrying", exc_info=True)
        raise
    except Exception as exc:
        logger.exception("voice analysis failed")
        _voice_finish(voice, status=Status.FAILED, error_code="analysis_failed", error_message=f"Analysis failed: {type(exc).__name__}")


def _voice_analyze_in(voice: VoicePrompt, workdir: Path) -> None:
    from engines.audio.io import encode_audio
    from engines.voice.analysis import analyze_prompt
    from engines.voice.prompt import PROMPT_SAMPLE_RATE, decode_prompt

    upload = storage_download(voice.upload_key, workdir / "upload.bin")
    decoded = decode_prompt(upload, max_audio_s=settings.VOICE_MAX_AUDIO_S)
    analysis = analyze_prompt(decoded.samples, min_speech_s=settings.VOICE_MIN_SPEECH_S, max_speech_s=settings.VOICE_MAX_SPEECH_S)
    prompt = workdir / "prompt.wav"
    encode_audio(analysis.audio, PROMPT_SAMPLE_RATE, prompt, "wav")
    content = prompt.read_bytes()
    prompt_key = default_storage.save(f"{_voice_dir(voice)}/prompt.wav", ContentFile(content, name="prompt.wav"))
    finished = _voice_finish(
        voice,
        status=Status.READY,
        prompt_key=prompt_key,
        content_sha256=hashlib.sha256(content).hexdigest(),
        container=decoded.container[:40],
        duration_s=decoded.duration_s,
        speech_s=analysis.speech_s,
        sample_rate=decoded.source_sample_rate,
        channels=decoded.source_channels,
        quality_score=analysis.score,
        quality_warnings=list(analysis.warnings),
        quality_metrics=analysis.metrics,
        embedding=[round(float(x), 6) for x in analysis.embedding],
    )
    if not finished:  # deleted while we worked: leave no orphan
        default_storage.delete(prompt_key)


def _voice_finish(voice: VoicePrompt, **fields: object) -> bool:
    updated = VoicePrompt.objects.filter(id=voice.id, status=Status.PROCESSING).update(analyzed_at=timezone.now(), **fields)
    try:
        client = redis_client()
        client.rpush(waiting.notice_key(voice.id), "1")
        client.expire(waiting.notice_key(voice.id), 120)
    except redis.RedisError:  # the waiting request falls back to polling
        logger.warning("could not notify the upload request", exc_info=True)
    logger.info("voice analysed", extra={"voice_id": str(voice.id), "status": fields.get("status"), "error_code": fields.get("error_code")})
    return bool(updated)


def voice_reference(*, voice: VoicePrompt, workdir: Path) -> VoiceReference:
    """The voice as an engine receives it: its prompt copied into the job's workdir."""
    path = storage_download(voice.prompt_key, workdir / "voice-prompt.wav")
    return VoiceReference(audio_path=path, transcript=voice.transcript, language=voice.language, embedding=tuple(voice.embedding))
