"""Voice prompt analysis: speech detection, trimming, level normalization,
speaker embedding and a quality score with reasons.

Thresholds were chosen on real recordings (piper and espeak-ng voices, with
noise, clipping, attenuation and a second speaker added); the tests hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engines.audio.dsp import rms_dbfs
from engines.voice import speaker, vad
from engines.voice.prompt import PROMPT_SAMPLE_RATE as RATE
from engines.voice.prompt import PromptRejected

MIN_SPEECH_S = 3.0
MAX_SPEECH_S = 30.0
EDGE_PAD_S = 0.15  # silence kept around the speech when trimming
TARGET_SPEECH_DBFS = -20.0  # stored prompts are level-normalized to this
CLIPPED_SAMPLE = 0.99
CLIPPING_WARN_RATIO = 0.001
LOW_LEVEL_DBFS = -35.0
NOISY_SNR_DB = 15.0
SHORT_PROMPT_S = 6.0  # cloning engines do better with 6-15 s
# Two groups of ~1.6 s windows whose mean embeddings are less similar than
# this are two voices (one speaker measured 0.79-0.87; piper + espeak 0.64).
OTHER_SPEAKER_SIMILARITY = 0.72
FRAME_S = 0.02

PENALTIES = {"clipping": 0.25, "low_level": 0.2, "noisy": 0.3, "multiple_speakers": 0.4, "short_prompt": 0.1}


@dataclass(frozen=True)
class PromptAnalysis:
    audio: np.ndarray  # trimmed and level-normalized, 16 kHz mono
    speech_s: float
    score: float
    warnings: tuple[str, ...]
    embedding: np.ndarray
    metrics: dict[str, float | None] = field(default_factory=dict)  # snr_db None: no noise floor measurable


def analyze_prompt(audio: np.ndarray, *, min_speech_s: float = MIN_SPEECH_S, max_speech_s: float = MAX_SPEECH_S) -> PromptAnalysis:
    segments = vad.speech_segments(audio)
    speech_s = sum(end - start for start, end in segments) / RATE
    _check_speech_length(speech_s, min_speech_s=min_speech_s, max_speech_s=max_speech_s)
    speech_mask = np.zeros(audio.size, dtype=bool)
    for start, end in segments:
        speech_mask[start:end] = True
    trimmed = _trim(audio, segments)
    embedding, partials = speaker.embed_with_partials(trimmed)
    snr = _snr_db(audio, speech_mask)
    speech_dbfs = round(float(rms_dbfs(audio[speech_mask])), 2)
    metrics: dict[str, float | None] = {
        "speech_dbfs": speech_dbfs,
        "clipping_ratio": round(float(np.mean(np.abs(audio[speech_mask]) >= CLIPPED_SAMPLE)), 5),
        "snr_db": round(float(snr), 2) if np.isfinite(snr) else None,  # None: no noise floor measurable
        "speaker_consistency": round(_two_voice_similarity(partials), 3),
    }
    warnings = _warnings(metrics, speech_s=speech_s)
    score = max(0.0, 1.0 - sum(PENALTIES[name] for name in warnings))
    return PromptAnalysis(
        audio=_normalized(trimmed, speech_dbfs),
        speech_s=round(speech_s, 3),
        score=round(score, 2),
        warnings=tuple(warnings),
        embedding=embedding,
        metrics=metrics,
    )


def _check_speech_length(speech_s: float, *, min_speech_s: float, max_speech_s: float) -> None:
    if speech_s < 0.5:
        raise PromptRejected("No speech was detected in the audio.", code="no_speech")
    if speech_s < min_speech_s:
        raise PromptRejected(f"The audio has {speech_s:.1f} s of speech; at least {min_speech_s:g} s are needed.", code="audio_too_short")
    if speech_s > max_speech_s:
        raise PromptRejected(f"The audio has {speech_s:.1f} s of speech; at most {max_speech_s:g} s are allowed.", code="audio_too_long")


def _trim(audio: np.ndarray, segments: list[tuple[int, int]]) -> np.ndarray:
    pad = int(EDGE_PAD_S * RATE)
    return audio[max(0, segments[0][0] - pad) : min(audio.size, segments[-1][1] + pad)]


def _snr_db(audio: np.ndarray, speech_mask: np.ndarray) -> float:
    """Speech level over the noise floor, the 10th percentile of 20 ms frame
    levels (pauses between words, room tone). Percentiles, not the VAD's
    pauses, because quiet word tails fall outside the VAD's speech."""
    frame = int(FRAME_S * RATE)
    count = audio.size // frame
    if count < 10:
        return float("inf")
    frame_power = np.mean(np.square(audio[: count * frame].reshape(count, frame), dtype=np.float64), axis=1)
    floor = float(np.percentile(frame_power, 10))
    if floor <= 0:
        return float("inf")
    return float(rms_dbfs(audio[speech_mask]) - 10 * np.log10(floor))


def _two_voice_similarity(partials: np.ndarray) -> float:
    """Split the windows' embeddings into two groups (2-means, seeded with the
    first window and the one least like it) and return the similarity of the
    group means: near 1 for one voice, low when a second voice is present."""
    if len(partials) < 4:
        return 1.0
    centers = [partials[0], partials[int(np.argmin(partials @ partials[0]))]]
    for _ in range(10):
        labels = np.argmax(np.stack([partials @ c for c in centers]), axis=0)
        if min(np.bincount(labels, minlength=2)) < 2:  # a lone odd window is not a speaker
            return 1.0
        centers = [partials[labels == group].mean(axis=0) for group in (0, 1)]
    return speaker.similarity(centers[0], centers[1])


def _warnings(metrics: dict[str, float | None], *, speech_s: float) -> list[str]:
    found = []
    snr_db = metrics["snr_db"]
    if (metrics["clipping_ratio"] or 0.0) > CLIPPING_WARN_RATIO:
        found.append("clipping")
    if (metrics["speech_dbfs"] or 0.0) < LOW_LEVEL_DBFS:
        found.append("low_level")
    if snr_db is not None and snr_db < NOISY_SNR_DB:
        found.append("noisy")
    if (metrics["speaker_consistency"] or 0.0) < OTHER_SPEAKER_SIMILARITY:
        found.append("multiple_speakers")
    if speech_s < SHORT_PROMPT_S:
        found.append("short_prompt")
    return found


def _normalized(audio: np.ndarray, speech_dbfs: float) -> np.ndarray:
    """Speech at TARGET_SPEECH_DBFS, peaks kept below full scale."""
    gain = 10 ** ((TARGET_SPEECH_DBFS - speech_dbfs) / 20)
    peak = float(np.max(np.abs(audio))) * gain
    if peak > 0.97:
        gain *= 0.97 / peak
    return (audio * gain).astype(np.float32)
