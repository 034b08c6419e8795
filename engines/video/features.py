"""Audio features at the video frame rate, and the mouth shapes they drive.

Per frame (a window centred on the frame's time): the speech-band loudness
(how far the mouth opens) and the spectral centroid of the voice (high for
"ee"-like vowels: lips spread wide; low for "oo"-like ones: lips rounded).
Silences close the mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANALYSIS_RATE = 16000
_WINDOW = 1024  # 64 ms at 16 kHz
_BAND_HZ = (120.0, 4000.0)  # where voiced speech energy lives
_DYNAMIC_RANGE_DB = 30.0  # loudness from (peak - this) up to the peak maps onto 0..1


@dataclass(frozen=True)
class MouthTrack:
    """Per-frame mouth shape weights, each 0..1 (before dynamic_scale)."""

    open: np.ndarray
    wide: np.ndarray
    round: np.ndarray
    silent: np.ndarray  # bool: no speech in this frame
    loudness_db: np.ndarray  # raw speech-band level per frame (for head nods and checks)

    @property
    def frames(self) -> int:
        return int(self.open.size)


def frame_count(duration_s: float, fps: int) -> int:
    """Frames covering the audio: the video is as long as the audio ± 1 frame."""
    return max(1, round(duration_s * fps))


def loudness_per_frame(samples: np.ndarray, fps: int, frames: int, rate: int = ANALYSIS_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Speech-band level (dBFS) and spectral centroid (Hz) per frame."""
    centers = ((np.arange(frames) + 0.5) * rate / fps).astype(np.int64)
    padded = np.pad(samples.astype(np.float32), (_WINDOW // 2, _WINDOW // 2))
    index = centers[:, np.newaxis] + np.arange(_WINDOW)[np.newaxis, :]
    windows = padded[np.clip(index, 0, padded.size - 1)] * np.hanning(_WINDOW).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    freqs = np.fft.rfftfreq(_WINDOW, 1 / rate)
    band = (freqs >= _BAND_HZ[0]) & (freqs <= _BAND_HZ[1])
    energy = spectrum[:, band].sum(axis=1)
    # Parseval with the Hann window's power (0.375 per sample): a full-scale
    # sine in the band reads about 0 dBFS.
    level_db = 10 * np.log10(2 * energy / (_WINDOW * _WINDOW * 0.375) + 1e-12)
    centroid = (spectrum[:, band] * freqs[band]).sum(axis=1) / np.maximum(energy, 1e-12)
    return level_db.astype(np.float32), centroid.astype(np.float32)


def mouth_track(
    samples: np.ndarray,
    *,
    fps: int,
    frames: int,
    temporal_smoothing: bool = True,
    lip_sync_correction: bool = True,
) -> MouthTrack:
    level_db, centroid = loudness_per_frame(samples, fps, frames)
    peak = float(np.percentile(level_db, 99)) if level_db.size else -120.0
    floor = float(np.percentile(level_db, 10))
    # Speech is what stands clearly above the recording's floor and within
    # the dynamic range below its peak.
    threshold = max(floor + 8.0, peak - _DYNAMIC_RANGE_DB, -55.0)
    silent = level_db < threshold
    open_raw = np.clip((level_db - threshold) / max(peak - threshold, 1e-3), 0, 1) ** 0.7
    voiced = ~silent
    center = float(np.median(centroid[voiced])) if voiced.any() else 1000.0
    spread = float(np.percentile(np.abs(centroid[voiced] - center), 75)) if voiced.any() else 1.0
    shape = np.clip((centroid - center) / max(spread * 2, 1.0), -1, 1) * open_raw
    wide_raw, round_raw = np.clip(shape, 0, 1), np.clip(-shape, 0, 1)
    if temporal_smoothing:
        open_, wide, round_ = (_smooth(track, sigma_frames=0.8 * fps / 25) for track in (open_raw, wide_raw, round_raw))
    else:
        open_, wide, round_ = open_raw, wide_raw, round_raw
    if lip_sync_correction:
        open_, wide, round_ = _correct(open_, wide, round_, open_raw=open_raw, silent=silent, fps=fps)
    return MouthTrack(open=open_, wide=wide, round=round_, silent=silent, loudness_db=level_db)


def _smooth(track: np.ndarray, *, sigma_frames: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing: no lag between sound and mouth."""
    if sigma_frames <= 0 or track.size < 3:
        return track.astype(np.float32)
    radius = max(1, round(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(track, radius, mode="edge"), kernel, mode="valid").astype(np.float32)


def _correct(
    open_: np.ndarray,
    wide: np.ndarray,
    round_: np.ndarray,
    *,
    open_raw: np.ndarray,
    silent: np.ndarray,
    fps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lip-sync correction after smoothing: a silence of two frames or more
    closes the mouth fully (smoothing would leak the neighbours' openness into
    it), and a speech onset opens it at once (smoothing would soften it)."""
    closed = _runs_at_least(silent, max(2, round(fps * 0.08)))
    onset = np.zeros_like(silent)
    onset[1:] = silent[:-1] & ~silent[1:]
    open_ = np.where(onset, np.maximum(open_, open_raw), open_)
    gate = np.where(closed, 0.0, 1.0).astype(np.float32)
    return open_ * gate, wide * gate, round_ * gate


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of every run of True values, end exclusive."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _runs_at_least(mask: np.ndarray, length: int) -> np.ndarray:
    """Frames inside runs of True at least ``length`` long."""
    out = np.zeros_like(mask)
    for start, end in runs(mask):
        if end - start >= length:
            out[start:end] = True
    return out
