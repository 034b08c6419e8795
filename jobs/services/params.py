"""Request resolution: which engine runs a request, and whether it can honour
every option asked for. Uses only engine metadata: no model is loaded in the
web process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.errors import ApplicationError
from engines import registry
from engines.errors import UnknownEngine
from voices.models import VoicePrompt


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
    "resolution": 512,
    "expand_ratio": 0.18,
    "inference_steps": 25,
    "dynamic_scale": 1.0,
    "motion_scale": 1.05,
    "fps": 25,
    "temporal_smoothing": True,
    "lip_sync_correction": True,
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
class WebhookTarget:
    """A per-job webhook: checked (SSRF guard) at submit."""

    url: str = ""
    events: list[str] | None = None


def tts_params_resolve(
    *,
    text: str,
    language: str | None,
    engine: str | None,
    format: str,
    speed: float,
    voice: VoicePrompt | None = None,
    instruct: str = "",
) -> TtsParams:
    """Pick the engine (default by language) and check it can do what was
    asked: the language, and every option (voice, instruct, speed). An option
    the engine cannot honour is refused here, never silently ignored."""
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
            "voice_not_ready",
            f"The voice is {voice.status}; only a ready voice can be used.",
            status=409,
            details={"voice_id": str(voice.id), "status": voice.status},
        )
    return TtsParams(text=text, language=language, engine=engine, format=format, speed=speed, voice=voice, instruct=instruct)


def talking_head_params_resolve(
    *,
    engine: str | None,
    options: dict[str, Any],
    text: str | None = None,
    language: str | None = None,
    voice: VoicePrompt | None = None,
    tts_engine: str | None = None,
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
            "unsupported_option",
            f"Engine '{engine}' renders at {', '.join(map(str, engine_cls.frame_rates))} fps only.",
            status=422,
            details={"engine": engine, "options": ["fps"], "supported_fps": list(engine_cls.frame_rates)},
        )
    speech = None
    if text is not None:
        speech = tts_params_resolve(text=text, language=language, engine=tts_engine, format="wav", speed=1.0, voice=voice)
    return TalkingHeadParams(engine=engine, options=values, speech=speech)


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
