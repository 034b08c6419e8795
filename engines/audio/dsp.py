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
    ramp = _ramp(n)
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


class ChunkJoiner:
    """``join_chunks``, incrementally: the pieces of each chunk go in as they
    are made and the samples come out as soon as they are final, so speech
    can be encoded (and streamed) sentence by sentence. The concatenation of
    everything it returns equals ``join_chunks`` of the whole chunks, sample
    for sample: a chunk's fade-in is applied once its length fixes the fade
    (2 x fade samples), and its last fade samples are held back until the
    chunk ends."""

    def __init__(self, sample_rate: int, gap_s: float = GAP_S, fade_s: float = FADE_S) -> None:
        self.sample_rate = sample_rate
        self._gap = np.zeros(int(sample_rate * gap_s), dtype=np.float32)
        self._fade = int(sample_rate * fade_s)
        self._chunks = 0
        self._held: list[np.ndarray] = []
        self._length = 0  # of the current chunk so far
        self._faded_in = False

    def start_chunk(self) -> np.ndarray:
        """The pause before a chunk (nothing before the first)."""
        self._held, self._length, self._faded_in = [], 0, False
        self._chunks += 1
        return self._gap if self._chunks > 1 else np.zeros(0, dtype=np.float32)

    def add(self, piece: np.ndarray) -> np.ndarray:
        """A piece of the current chunk; returns the samples now final."""
        self._held.append(to_float32_mono(piece))
        self._length += len(self._held[-1])
        if self._fade <= 0 or self._length < 2 * self._fade:
            return np.zeros(0, dtype=np.float32)  # the fade's length is not known yet
        held = np.concatenate(self._held)
        if not self._faded_in:
            held[: self._fade] *= _ramp(self._fade)
            self._faded_in = True
        self._held = [held[-self._fade :]]
        return held[: -self._fade]

    def end_chunk(self) -> np.ndarray:
        """The rest of the current chunk, faded out."""
        held = np.concatenate(self._held) if self._held else np.zeros(0, dtype=np.float32)
        self._held = []
        if not self._faded_in:  # short chunk: the whole of it was held
            return apply_edge_fades(held, self.sample_rate, self._fade / self.sample_rate) if self._fade > 0 else held
        held = held.copy()
        held[-self._fade :] *= _ramp(self._fade)[::-1]
        return held


def _ramp(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32))).astype(np.float32)
