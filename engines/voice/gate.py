"""The voice-matching gate: matched speech is kept only when it sounds more
like the prompt *and* is still as intelligible as the speech it came from.

Similarity is the cosine of resemblyzer embeddings (output vs prompt).
Intelligibility is the word error rate of pocketsphinx (English only) on the
leading part of the speech, against the text it says. Matched speech is kept
when

    similarity(matched) > similarity(unmatched)
    and WER(matched) <= WER(unmatched) + wer_tolerance(words)   (where WER is measured)

else the unmatched speech is delivered, with the reason. When the full
matching fails on intelligibility, a gentler one (``FALLBACK_STRENGTHS``) is
tried before giving up.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from engines.voice import intelligibility, matching, speaker

FloatArray = npt.NDArray[np.floating]

# How much worse matched speech may be recognized than the unmatched speech:
# WER(matched) <= WER(unmatched) + max(WER_TOLERANCE, WER_TOLERANCE_MIN_WORDS / words).
# Set by measurement (bench/voice_similarity.py; README "Voices"): on 15
# two-sentence piper texts (~15 words each), WORLD resynthesis that changes
# nothing moves pocketsphinx's WER by +0.05 on average, single texts by
# -0.18..+0.42 (sd 0.14): the recognizer flips words on any change, even on a
# gain of 0.5 undone. Matching toward other voices with DEFAULT_SETTINGS costs
# +0.02..+0.04 on average (LEGACY_SETTINGS: +0.04..+0.12), destructive
# matchings +0.25 and more (formants warped down by 10 %) up to ~0.9 (the
# words gone). 0.05 passes matchings whose cost is within the noise of an
# 80-word text; one word of slack keeps short texts from being judged on a
# single flipped word.
WER_TOLERANCE = 0.05
WER_TOLERANCE_MIN_WORDS = 1
# WER is measured on the leading chunks of the speech, up to this much audio
# (at least one chunk): matching is one global transform (same F0 map, warp
# and equalizer on every frame), so an excerpt judges it, and the cost per
# job stays bounded: two recognitions (three with the fallback strength) at a
# real-time factor of ~0.16 on one core, i.e. <= ~10 s (15 s) per job.
# WER is only measured when it decides something: not when similarity alone
# already rules the matching out.
WER_MAX_AUDIO_S = 30.0
# Strengths tried, in order, while the matched speech fails on
# intelligibility: a gentler matching keeps ~2/3 of the similarity gain.
FALLBACK_STRENGTHS: tuple[float, ...] = (1.0, 0.6)


@dataclass(frozen=True)
class Excerpt:
    """What the gate recognizes: ``audio[:end]`` says ``text``."""

    text: str
    end: int


@dataclass
class Outcome:
    audio: npt.NDArray[np.float32]
    voice: dict[str, Any]
    quality: dict[str, Any] = field(default_factory=dict)


def wer_tolerance(words: int) -> float:
    """The WER matched speech may add, for a text of ``words`` words."""
    return max(WER_TOLERANCE, WER_TOLERANCE_MIN_WORDS / max(words, 1))


def decide(
    *, similarity_before: float, similarity_after: float, wer_before: float | None, wer_after: float | None, words: int = 0
) -> str | None:
    """None: keep the matched speech. Else the reason not to:
    ``"similarity"`` (not closer to the prompt) or ``"intelligibility"``
    (WER rose past ``wer_tolerance(words)``; ``words``: of the reference)."""
    if not similarity_after > similarity_before:
        return "similarity"
    if wer_before is not None and wer_after is not None and wer_after > wer_before + wer_tolerance(words) + 1e-9:
        return "intelligibility"
    return None


def match_gated(
    audio: npt.NDArray[np.float32],
    sample_rate: int,
    *,
    prompt: FloatArray,
    target: FloatArray,
    language: str,
    excerpt: Excerpt | None,
    settings: matching.MatchSettings | None = None,
    strengths: tuple[float, ...] | None = None,
) -> Outcome:
    """Voice matching of ``audio`` toward ``prompt`` (16 kHz samples) whose
    speaker embedding is ``target``, kept only when it passes ``decide``.

    ``voice``: mode "matching", matching_applied, reason (when not applied),
    speaker_similarity (of the delivered speech), speaker_similarity_unmatched,
    matching_strength (when applied). ``quality``: see ``SpeechResult``.
    ``settings`` and ``strengths`` default to matching.DEFAULT_SETTINGS and
    FALLBACK_STRENGTHS, read at the call.
    """
    settings = settings or matching.DEFAULT_SETTINGS
    strengths = strengths or FALLBACK_STRENGTHS
    words = len(intelligibility.normalize(excerpt.text)) if excerpt is not None else 0
    before = speaker.similarity(speaker.embed(audio, sample_rate), target)
    quality: dict[str, Any] = {"speaker_similarity": round(before, 3), "speaker_similarity_unmatched": round(before, 3)}

    def unmatched(reason: str) -> Outcome:
        voice = {
            "mode": "matching",
            "matching_applied": False,
            "reason": reason,
            "speaker_similarity": round(before, 3),
            "speaker_similarity_unmatched": round(before, 3),
        }
        return Outcome(audio, voice, quality)

    def wer_of(samples: FloatArray) -> float | None:
        if excerpt is None or not intelligibility.has_model(language):
            return None
        quality["wer_measured_s"] = round(excerpt.end / sample_rate, 2)
        return intelligibility.measure(samples[: excerpt.end], excerpt.text, language, sample_rate)

    try:
        target_profile = matching.voice_profile(prompt, settings=settings)
        analysis = matching.analyze(audio, sample_rate, settings)
        candidate = matching.match_voice(audio, sample_rate, target_profile, settings, analysis)
    except ValueError:  # too little voiced speech on one side: nothing to match
        return unmatched("no_voiced_speech")
    wer_before: float | None = None
    reason = "similarity"
    attempts: list[dict[str, Any]] = []
    quality["matching_attempts"] = attempts
    for index, strength in enumerate(strengths):
        if index:
            candidate = matching.match_voice(audio, sample_rate, target_profile, replace(settings, strength=strength), analysis)
        after = speaker.similarity(speaker.embed(candidate, sample_rate), target)
        attempt: dict[str, Any] = {"strength": strength, "speaker_similarity": round(after, 3), "wer": None}
        attempts.append(attempt)
        quality["speaker_similarity_matched"] = round(after, 3)
        if not after > before:
            break  # a gentler matching moves the voice less: no use trying one
        if index == 0:
            wer_before = wer_of(audio)
            quality["wer"] = quality["wer_unmatched"] = _rounded(wer_before)
        wer_after = wer_of(candidate) if wer_before is not None else None
        attempt["wer"] = quality["wer_matched"] = _rounded(wer_after)
        failed = decide(similarity_before=before, similarity_after=after, wer_before=wer_before, wer_after=wer_after, words=words)
        if failed is None:
            quality.update(speaker_similarity=round(after, 3), wer=_rounded(wer_after), matching_strength=strength)
            voice = {
                "mode": "matching",
                "matching_applied": True,
                "matching_strength": strength,
                "speaker_similarity": round(after, 3),
                "speaker_similarity_unmatched": round(before, 3),
            }
            return Outcome(candidate, voice, quality)
        reason = "intelligibility"
    return unmatched(reason)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
