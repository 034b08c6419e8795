"""Decoding an uploaded voice prompt: any container FFmpeg (PyAV) reads, to
16 kHz mono float32, with the decoded length capped before memory is spent.

The client's file name and declared content type are never trusted; FFmpeg
probes the bytes. A tiny file can declare hours of audio (a FLAC of silence, a
WAV header with a 4 GB data size), so decoding stops at ``max_audio_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import PermanentEngineError

PROMPT_SAMPLE_RATE = 16000  # what speaker encoders, VAD and CosyVoice expect


class PromptRejected(PermanentEngineError):
    """The prompt cannot be used; ``code`` says why (stable, client-facing)."""

    code = "audio_unreadable"


@dataclass(frozen=True)
class DecodedPrompt:
    samples: np.ndarray  # float32 mono at PROMPT_SAMPLE_RATE
    source_sample_rate: int
    source_channels: int
    container: str
    duration_s: float


def decode_prompt(path: Path, *, max_audio_s: float) -> DecodedPrompt:
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise PromptRejected(f"The file is not audio FFmpeg can read ({type(exc).__name__}).") from None
    with container:
        if not container.streams.audio:
            raise PromptRejected("The file has no audio stream.")
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate or 0, stream.codec_context.channels or 0
        samples = _decode_capped(container, stream, max_samples=int(max_audio_s * PROMPT_SAMPLE_RATE))
        name = container.format.name
    if samples.size == 0:
        raise PromptRejected("The file contains no audio samples.")
    if not np.all(np.isfinite(samples)):
        raise PromptRejected("The audio contains invalid (non-finite) samples.")
    return DecodedPrompt(samples, rate, channels, name, round(samples.size / PROMPT_SAMPLE_RATE, 3))


def _decode_capped(container: Any, stream: Any, *, max_samples: int) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=PROMPT_SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            for converted in resampler.resample(frame):
                pieces.append(converted.to_ndarray().reshape(-1))
                total += pieces[-1].size
            if total > max_samples:
                raise PromptRejected(
                    f"The audio is longer than {max_samples // PROMPT_SAMPLE_RATE} s; upload a clip with 3 to 30 s of speech.",
                    code="audio_too_long",
                )
        pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.FFmpegError, ValueError) as exc:
        # A cut-off upload (truncated tail) keeps the audio before the damage;
        # speech detection then judges whether enough is left.
        if not pieces:
            raise PromptRejected(f"The audio stream is corrupt ({type(exc).__name__}).") from None
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
