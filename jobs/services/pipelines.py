"""What a job makes: speech, or a talking head (speech first when it was
given text). Each returns a JobOutput for the run to store."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from engines import registry
from engines.errors import Canceled, EngineError, EngineOutOfMemory, PermanentEngineError
from engines.tts.base import AudioCallback, SpeechRequest, SpeechResult, VoiceReference
from jobs.models import Job
from jobs.services.audio_publish import CANCELED, COMPLETE, FAILED, INTERRUPTED, AudioPublisher
from jobs.services.files import job_input_fetch
from jobs.services.params import TALKING_HEAD_DEFAULTS
from jobs.services.progress import ProgressReport, job_progress, progress_between
from tenants.limits import tenant_limits
from voices.models import VoicePrompt
from voices.services import voice_reference

logger = logging.getLogger(__name__)

# Share of overall progress given to the engine; the rest is storing.
ENGINE_PROGRESS_SHARE = 95


@dataclass(frozen=True)
class JobOutput:
    """What a run produced, ready to store: the main file and any others by role."""

    path: Path
    content_type: str
    duration_s: float
    size_bytes: int
    info: dict[str, Any] = field(default_factory=dict)  # shown with the result
    extra: dict[str, JobOutput] = field(default_factory=dict)


def job_make(job: Job, workdir: Path) -> JobOutput:
    make = job_render if job.kind == Job.Kind.TALKING_HEAD else job_speak
    return make(job, workdir)


def job_speak(job: Job, workdir: Path) -> JobOutput:
    """Speech; its encoded audio is published as it is made when a listener
    wants it (jobs/services/audio_publish.py)."""
    max_duration_s = tenant_limits(job.tenant).max_job_duration_s
    publisher = AudioPublisher(job_id=job.id, attempt=job.attempts)
    report = progress_between(job, 0, ENGINE_PROGRESS_SHARE)
    try:
        result = _speech_synthesize(job, workdir, report, max_duration_s=max_duration_s, on_audio=publisher)
    except EngineError as exc:
        publisher.end(FAILED if exc.permanent else INTERRUPTED, code=exc.code, message=exc.message)
        raise
    except Canceled:
        publisher.end(CANCELED)
        raise
    except BaseException:  # transient: another attempt may follow (and begins a new stream)
        publisher.end(INTERRUPTED)
        raise
    publisher.end(COMPLETE)
    return _speech_output(result)


def job_render(job: Job, workdir: Path) -> JobOutput:
    """Talking head: check the portrait (the face), get the speech (the
    upload, or text through a TTS engine: a stage of this job whose audio is
    kept as a second result file), check the audio, render. Out of memory
    renders again at the next lower resolution (1024 -> 768 -> 512)."""
    from engines.video.base import TalkingHeadRequest
    from engines.video.inputs import check_audio, check_portrait

    job_progress(job=job, percent=1, stage="checking image")
    portrait = check_portrait(job_input_fetch(job, "image", workdir))
    # The video lasts as long as its speech: the tenant's limit on one job's
    # output bounds it, as TALKING_HEAD_MAX_AUDIO_S does.
    max_audio_s = min(settings.TALKING_HEAD_MAX_AUDIO_S, tenant_limits(job.tenant).max_job_duration_s)
    speech = None
    if "audio" in job.input_files:
        audio_path = job_input_fetch(job, "audio", workdir)
        render_from = 5
    else:
        speech = _talking_head_speech(job, workdir, max_audio_s=max_audio_s)
        audio_path, render_from = speech.path, 20
    job_progress(job=job, percent=render_from - 1, stage="checking audio")
    audio_duration = check_audio(audio_path, max_audio_s=max_audio_s)
    engine = registry.get_engine(job.engine)
    requested = job.input["resolution"]
    ladder = sorted((r for r in engine.resolutions if r <= requested), reverse=True) or [requested]
    options = {name: job.input[name] for name in TALKING_HEAD_DEFAULTS if name != "resolution"}
    fallbacks: list[dict[str, Any]] = []
    for step, resolution in enumerate(ladder):
        request = TalkingHeadRequest(
            image_path=workdir / "image",
            audio_path=audio_path,
            face=portrait.face,
            resolution=resolution,
            seed=int((job.dedup_key or job.id.hex)[:8], 16),
            **options,
        )
        try:
            result = engine.run(request, progress_between(job, render_from, ENGINE_PROGRESS_SHARE), workdir)
            break
        except EngineOutOfMemory as exc:
            fallbacks.append({"resolution": resolution, "error": exc.message})
            if step == len(ladder) - 1:
                raise
            logger.warning("out of memory; rendering at a lower resolution", extra={"resolution": resolution})
            job_progress(job=job, percent=render_from, stage=f"out of memory at {resolution} px; retrying at {ladder[step + 1]} px")
    else:  # an empty ladder: cannot happen (it holds at least the requested resolution)
        raise AssertionError("no resolution to render at")
    info: dict[str, Any] = {
        "width": result.width,
        "height": result.height,
        "fps": result.fps,
        "frames": result.frames,
        "resolution": resolution,
        "requested_resolution": requested,
        "audio_duration_s": audio_duration,
        "face": portrait.face.as_dict(),
        "faces_found": portrait.faces_found,
        "warnings": portrait.warnings,
    }
    if fallbacks:
        info["fallbacks"] = fallbacks
    extra = {"audio": _speech_output(speech)} if speech is not None else {}
    return JobOutput(result.path, result.content_type, result.duration_s, result.size_bytes, info=info, extra=extra)


def _talking_head_speech(job: Job, workdir: Path, *, max_audio_s: float) -> SpeechResult:
    """The speech stage, stopped as soon as it is longer than the video may be."""
    try:
        return _speech_synthesize(job, workdir, progress_between(job, 2, 20), format="wav", max_duration_s=max_audio_s)
    except PermanentEngineError as exc:
        if exc.code == "duration_limit_exceeded" and max_audio_s == settings.TALKING_HEAD_MAX_AUDIO_S:
            raise PermanentEngineError(
                f"The speech is longer than the {max_audio_s:g} s a talking head may last.", code="audio_too_long"
            ) from None
        raise


def _speech_synthesize(
    job: Job,
    workdir: Path,
    report: ProgressReport,
    *,
    format: str | None = None,
    max_duration_s: float | None = None,
    on_audio: AudioCallback | None = None,
) -> SpeechResult:
    engine_name = job.input.get("tts_engine", job.engine) if job.kind == Job.Kind.TALKING_HEAD else job.engine
    engine = registry.get_engine(engine_name)
    request = SpeechRequest(
        text=job.input["text"],
        language=job.input["language"],
        format=format or job.input["format"],
        speed=job.input.get("speed", 1.0),
        voice=_job_voice(job, workdir),
        instruct=job.input.get("instruct", ""),
        max_duration_s=max_duration_s,
        voice_matching=job.input.get("voice_matching", "auto"),
        on_audio=on_audio,
    )
    result: SpeechResult = engine.run(request, report, workdir)
    return result


def _speech_output(result: SpeechResult) -> JobOutput:
    info: dict[str, Any] = {}
    if result.voice:
        voice = dict(result.voice)
        info = {"speaker_similarity": voice.pop("speaker_similarity"), "voice": voice}
    if result.quality:
        info["quality"] = dict(result.quality)
    return JobOutput(result.path, result.content_type, result.duration_s, result.size_bytes, info=info)


def _job_voice(job: Job, workdir: Path) -> VoiceReference | None:
    if not job.input.get("voice_id"):
        return None
    voice = VoicePrompt.objects.filter(id=job.input["voice_id"], tenant_id=job.tenant_id, status=VoicePrompt.Status.READY).first()
    if voice is None:
        raise PermanentEngineError("The job's voice was deleted before the job ran.", code="voice_deleted")
    return voice_reference(voice=voice, workdir=workdir)
