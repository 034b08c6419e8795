"""Small DSP helpers: joining synthesized chunks without clicks."""

from __future__ import annotations

import numpy as np

FADE_S = 0.008  # long enough to remove a step discontinuity, too short to hear
GAP_S = 0.12  # natural pause between sentences


def to_float32_mono(samples: np.ndarray) -> np.ndarray:
    """Accept int16 or float arrays, (n,) or (channels, n); return float32 (n,)."""
    audio = np.asarray(samples)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / 32768.0
    return np.clip(audio.astype(np.float32, copy=False), -1.0, 1.0)


def apply_edge_fades(audio: np.ndarray, sample_rate: int, fade_s: float = FADE_S) -> np.ndarray:
    """Raised-cosine fade in/out so a chunk starts and ends at zero amplitude."""
    n = min(int(sample_rate * fade_s), len(audio) // 2)
    if n <= 0:
        return audio
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32))).astype(np.float32)
    out = audio.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def join_chunks(chunks: list[np.ndarray], sample_rate: int, gap_s: float = GAP_S) -> np.ndarray:
    """Concatenate chunks with faded edges and a short silence between them."""
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(int(sample_rate * gap_s), dtype=np.float32)
    parts: list[np.ndarray] = []
    for index, chunk in enumerate(chunks):
        if index:
            parts.append(gap)
        parts.append(apply_edge_fades(to_float32_mono(chunk), sample_rate))
    return np.concatenate(parts)


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level in dBFS (-inf for digital silence)."""
    if audio.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy), float32 in and out."""
    if from_rate == to_rate:
        return np.asarray(audio, dtype=np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    divisor = gcd(from_rate, to_rate)
    resampled: np.ndarray = resample_poly(audio, to_rate // divisor, from_rate // divisor).astype(np.float32)
    return resampled
