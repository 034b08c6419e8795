"""Measuring a talking-head video from the outside: an independent landmark
pass over the decoded frames (the face is detected again in every frame, no
renderer state is used) against the loudness of the file's own audio track.

Used by the tests and ``bench/talking_head.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.video.media import VideoInfo, decode_frames, probe_video


@dataclass(frozen=True)
class LipSyncReport:
    info: VideoInfo
    mouth: np.ndarray  # per frame: inner-lip gap / face height (NaN: no face found)
    loudness_db: np.ndarray  # per frame: RMS of the audio track during the frame
    correlation: float  # Pearson, mouth opening vs loudness (dB above the floor)
    best_lag_frames: int  # lag of the best correlation (+: the mouth follows the sound)
    silent_mouth_max: float  # largest opening inside silences (runs of 3+ silent frames, edges excluded)
    speech_mouth_p90: float  # 90th percentile of the opening while speaking
    faces_found: int  # frames in which a face was found
    # Flicker outside the head: mean |pixel change| from one frame to the next,
    # typical (median) and worst (a keyframe re-encodes the background once).
    background_change_median: float
    background_change_max: float
    background_pixels: int  # how many pixels are outside the head


# Outside an ellipse this much larger than the face oval (frame 0), nothing
# should move: no flicker in the background.
STABLE_OUTSIDE_SCALE = 1.5


def measure(path: Path, *, max_lag: int = 4) -> LipSyncReport:
    from engines.audio.io import decode_audio
    from engines.video.face import face_models, mouth_opening

    info = probe_video(path)
    models = face_models()
    mouth, changes, previous, outside = [], [], None, None
    for frame in decode_frames(path):
        faces = models.detect(frame)
        landmarks = models.landmarks(frame, faces[0])[0] if faces else None
        mouth.append(mouth_opening(landmarks) if landmarks is not None else np.nan)
        if previous is None:
            outside = _outside_head(frame.shape[:2], landmarks)
        elif outside is not None and outside.any():  # set at the first frame
            changes.append(float(np.abs(frame[outside].astype(np.int16) - previous[outside].astype(np.int16)).mean()))
        previous = frame
    mouth_track = np.array(mouth, dtype=np.float64)
    audio, rate = decode_audio(path, sample_rate=16000)
    loudness = _loudness_per_frame(audio, rate, info.fps, mouth_track.size)
    level = np.clip(loudness - (np.percentile(loudness, 99) - 40), 0, None)
    silent = _inside_runs(level < 8)  # more than 32 dB below the loudest speech
    found = ~np.isnan(mouth_track)
    lags = {lag: _correlation(mouth_track, level, lag) for lag in range(-max_lag, max_lag + 1)}
    best_lag = max(lags, key=lambda lag: lags[lag] if np.isfinite(lags[lag]) else -2)
    return LipSyncReport(
        info=info,
        mouth=mouth_track,
        loudness_db=loudness,
        correlation=lags[0],
        best_lag_frames=best_lag,
        silent_mouth_max=float(np.nanmax(mouth_track[silent & found])) if (silent & found).any() else float("nan"),
        speech_mouth_p90=float(np.nanpercentile(mouth_track[~silent & found], 90)) if (~silent & found).any() else float("nan"),
        faces_found=int(found.sum()),
        background_change_median=float(np.median(changes)) if changes else 0.0,
        background_change_max=float(max(changes)) if changes else 0.0,
        background_pixels=int(outside.sum()) if outside is not None else 0,
    )


def _inside_runs(mask: np.ndarray, length: int = 3) -> np.ndarray:
    """Frames strictly inside runs of at least ``length`` True frames: the
    first and last frame of a silence are transitions."""
    from engines.video.features import runs

    out = np.zeros_like(mask)
    for start, end in runs(mask):
        if end - start >= length:
            out[start + 1 : end - 1] = True
    return out


def _outside_head(shape: tuple[int, int], landmarks: np.ndarray | None) -> np.ndarray:
    from engines.video.face import FACE_OVAL

    if landmarks is None:
        return np.zeros(shape, bool)
    oval = landmarks[list(FACE_OVAL)]
    center, radii = oval.mean(0), (oval.max(0) - oval.min(0)) / 2 * STABLE_OUTSIDE_SCALE
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    outside: np.ndarray = ((xs - center[0]) / radii[0]) ** 2 + ((ys - center[1]) / radii[1]) ** 2 > 1
    return outside


def _loudness_per_frame(audio: np.ndarray, rate: int, fps: float, frames: int) -> np.ndarray:
    hop = rate / fps
    out = np.full(frames, -120.0)
    for index in range(frames):
        chunk = audio[int(index * hop) : int((index + 1) * hop)]
        if chunk.size:
            out[index] = 20 * np.log10(np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) + 1e-6)
    return out


def _correlation(mouth: np.ndarray, level: np.ndarray, lag: int) -> float:
    """Correlation of mouth[t] with level[t - lag]."""
    if lag > 0:
        a, b = mouth[lag:], level[:-lag]
    elif lag < 0:
        a, b = mouth[:lag], level[-lag:]
    else:
        a, b = mouth, level
    keep = ~np.isnan(a)
    if keep.sum() < 3 or np.std(a[keep]) == 0 or np.std(b[keep]) == 0:
        return float("nan")
    return float(np.corrcoef(a[keep], b[keep])[0, 1])
