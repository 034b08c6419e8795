"""Speech detection with silero-vad (torch; the model ships in the wheel)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from engines.voice.prompt import PROMPT_SAMPLE_RATE

_lock = threading.Lock()
_model: Any = None


def load() -> None:
    """Load the model now (worker start), not during the first analysis."""
    with _lock:
        _load()


def _load() -> Any:
    global _model
    if _model is None:
        from silero_vad import load_silero_vad

        _model = load_silero_vad()
    return _model


def speech_segments(audio: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample indices of speech in 16 kHz mono audio."""
    import torch
    from silero_vad import get_speech_timestamps

    # The model carries recurrent state between windows (reset per call): one
    # caller at a time. It runs ~100x real time, so the lock is cheap.
    with _lock:
        model = _load()
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            model,
            sampling_rate=PROMPT_SAMPLE_RATE,
            min_silence_duration_ms=150,
        )
    return [(int(stamp["start"]), int(stamp["end"])) for stamp in stamps]
