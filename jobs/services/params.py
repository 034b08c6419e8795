"""Request resolution: which engine runs a request, and whether it can honour
every option asked for. Uses only engine metadata: no model is loaded in the
web process."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
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
    voice_matching: str = "auto"  # with a voice: "auto" or "off" (engines/tts/base.py)


# How built-in engines may move their speech toward a voice prompt.
VOICE_MATCHING_MODES = ("auto", "off")


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
    voice_matching: str | None = None,
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
    _check_voice_matching(engine=engine, engine_cls=engine_cls, voice=voice, voice_matching=voice_matching)
    return TtsParams(
        text=text,
        language=language,
        engine=engine,
        format=format,
        speed=speed,
        voice=voice,
        instruct=instruct,
        voice_matching=voice_matching or "auto",
    )


def _check_voice_matching(*, engine: str, engine_cls: Any, voice: VoicePrompt | None, voice_matching: str | None) -> None:
    """``voice_matching`` is refused where it could mean nothing: without a
    voice, or with an engine that clones the voice itself (nothing to match)."""
    if voice_matching is None:
        return
    if voice is None:
        raise ApplicationError(
            "validation_error",
            "voice_matching applies only with voice_id.",
            details={"fields": {"voice_matching": [{"message": "Only with voice_id.", "code": "invalid"}]}},
        )
    if engine_cls.clones_voice:
        raise ApplicationError(
            "unsupported_option",
            f"Engine '{engine}' clones the voice itself: it has no voice matching to switch.",
            status=422,
            details={"engine": engine, "options": ["voice_matching"], "supported": sorted(engine_cls.options)},
        )


def talking_head_params_resolve(
    *,
    engine: str | None,
    options: dict[str, Any],
    text: str | None = None,
    language: str | None = None,
    voice: VoicePrompt | None = None,
    tts_engine: str | None = None,
    voice_matching: str | None = None,
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
        speech = tts_params_resolve(
            text=text, language=language, engine=tts_engine, format="wav", speed=1.0, voice=voice, voice_matching=voice_matching
        )
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


# ---------------------------------------------------------------- job size
#
# How much a request will make, known before any engine runs: the limit on
# one job's output (TENANT_MAX_JOB_DURATION_S) refuses what is too large at
# submit, and fair share weighs jobs by it. Seconds of speech per character,
# measured on the built-in engines (piper, espeak) at speed 1.0. It errs on
# the long side where engines blow up: a character of a script the language
# does not use is read out by its name, one or several words per character
# (5,000 Chinese characters read as English made 1,890 s of audio).
_LETTER_S = 0.07  # a letter of the language's script (or Latin)
_SYLLABLE_S = 0.14  # a letter of an abugida or abjad: a consonant with its vowel
_CJK_S = 0.3  # a Han, kana or Hangul character in a language written with it: a syllable
_FOREIGN_LETTER_S = 0.35  # a letter of another script: its name ("Greek small letter alpha")
_FOREIGN_CJK_S = 0.7  # a Han, kana or Hangul character in another language ("CJK letter ...")
_DIGIT_S = 0.4  # digits become number words ("1234": "one thousand two hundred ...")
_SYMBOL_S = 0.3  # "%", "&", "€", emoji...: a word or more
_PAUSE_S = 0.05  # punctuation

_CJK_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC"})
_SYLLABIC_SCRIPTS = frozenset(
    {"DEVANAGARI", "BENGALI", "GURMUKHI", "GUJARATI", "ORIYA", "TAMIL", "TELUGU", "KANNADA", "MALAYALAM", "SINHALA", "THAI"}
    | {"MYANMAR", "ETHIOPIC", "ARABIC", "HEBREW"}
)
# Scripts of the languages not written in Latin letters (espeak-ng's codes; the part before the first "-").
_LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("cmn", "yue", "zh", "hak"), frozenset({"CJK", "BOPOMOFO", "IDEOGRAPHIC"})),
    "ja": frozenset({"CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC"}),
    "ko": frozenset({"HANGUL", "CJK"}),
    **dict.fromkeys(("ru", "uk", "be", "bg", "mk", "sr", "kk", "ky", "tt", "ba", "cv", "nog"), frozenset({"CYRILLIC"})),
    **dict.fromkeys(("el", "grc"), frozenset({"GREEK"})),
    **dict.fromkeys(("ar", "fa", "ur", "ug", "sd"), frozenset({"ARABIC"})),
    "he": frozenset({"HEBREW"}),
    **dict.fromkeys(("hi", "mr", "ne", "kok"), frozenset({"DEVANAGARI"})),
    **dict.fromkeys(("bn", "as", "bpy"), frozenset({"BENGALI"})),
    "pa": frozenset({"GURMUKHI"}),
    "gu": frozenset({"GUJARATI"}),
    "or": frozenset({"ORIYA"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
    "kn": frozenset({"KANNADA"}),
    "ml": frozenset({"MALAYALAM"}),
    "si": frozenset({"SINHALA"}),
    "th": frozenset({"THAI"}),
    "my": frozenset({"MYANMAR"}),
    "shn": frozenset({"MYANMAR"}),
    "ka": frozenset({"GEORGIAN"}),
    **dict.fromkeys(("hy", "hyw"), frozenset({"ARMENIAN"})),
    **dict.fromkeys(("am", "ti"), frozenset({"ETHIOPIC"})),
    "chr": frozenset({"CHEROKEE"}),
}


@cache
def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0]


def _language_scripts(language: str) -> frozenset[str]:
    code = language.lower().split("-", 1)[0]
    if "-latn" in language.lower():  # e.g. cmn-latn-pinyin, fa-latn
        return frozenset({"LATIN"})
    return _LANGUAGE_SCRIPTS.get(code, frozenset()) | {"LATIN"}


def speech_duration_estimate(*, text: str, language: str, speed: float = 1.0) -> float:
    """Seconds of speech ``text`` will make in ``language``: an estimate from
    its characters (no engine runs), generous where engines blow up."""
    own = _language_scripts(language)
    total = 0.0
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "LN" and char.isdigit():
            total += _DIGIT_S
        elif category[0] == "L" or category == "Nl":
            script = _script(char)
            cjk = script in _CJK_SCRIPTS
            if script in own or (cjk and own & _CJK_SCRIPTS):
                total += _CJK_S if cjk else _SYLLABLE_S if script in _SYLLABIC_SCRIPTS else _LETTER_S
            else:
                total += _FOREIGN_CJK_S if cjk else _FOREIGN_LETTER_S
        elif category[0] == "S":
            total += _SYMBOL_S
        elif category[0] == "P":
            total += _PAUSE_S
        # spaces, marks (part of their letter), other numbers: nothing of their own
    return round(total / max(speed, 0.1), 1)


@dataclass(frozen=True)
class JobSize:
    """What a job will make (seconds of audio or video; None: not known before
    the worker decodes an upload) and its weight for fair share, in seconds
    of speech."""

    estimated_duration_s: float | None
    cost: float


# Uploaded audio is decoded by the worker only; for its weight it is taken
# at 128 kbit/s (a typical MP3): uncompressed audio is overrated, never above
# TALKING_HEAD_MAX_AUDIO_S; a very low bitrate underrates it, no worse than
# counting jobs.
UPLOAD_AUDIO_BYTES_PER_S = 16_000


def tts_size(params: TtsParams) -> JobSize:
    estimate = speech_duration_estimate(text=params.text, language=params.language, speed=params.speed)
    return JobSize(estimated_duration_s=estimate, cost=estimate)


def talking_head_size(params: TalkingHeadParams, *, audio_size_bytes: int | None) -> JobSize:
    """The video lasts as long as its speech; a video second weighs
    TALKING_HEAD_COST_PER_SECOND seconds of speech."""
    speech = params.speech
    if speech is not None:
        estimate: float | None = speech_duration_estimate(text=speech.text, language=speech.language)
        seconds = min(estimate or 0.0, settings.TALKING_HEAD_MAX_AUDIO_S)  # the worker stops the speech there
    else:
        estimate = None
        seconds = min((audio_size_bytes or 0) / UPLOAD_AUDIO_BYTES_PER_S, settings.TALKING_HEAD_MAX_AUDIO_S)
    return JobSize(estimated_duration_s=estimate, cost=round(seconds * settings.TALKING_HEAD_COST_PER_SECOND, 1))
