"""Speaker embeddings with resemblyzer's GE2E encoder (torch; its weights ship
in the wheel). Embeddings are L2-normalized, so similarity is a dot product."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from engines.audio.dsp import resample
from engines.voice.prompt import PROMPT_SAMPLE_RATE

EMBEDDING_SIZE = 256
_lock = threading.Lock()
_encoder: Any = None


def _load() -> Any:
    global _encoder
    with _lock:
        if _encoder is None:
            with warnings.catch_warnings():  # its webrtcvad import warns about pkg_resources
                warnings.simplefilter("ignore")
                from resemblyzer import VoiceEncoder

            _encoder = VoiceEncoder("cpu", verbose=False)
    return _encoder


def load() -> None:
    """Load the encoder now (worker start), not during the first job, and run
    it once: librosa's first mel spectrogram compiles code (~1.5 s)."""
    _load()
    tone = np.sin(np.linspace(0, 2000 * np.pi, PROMPT_SAMPLE_RATE * 2)).astype(np.float32) * 0.1
    embed(tone)


def _prepared(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    from resemblyzer import preprocess_wav

    wav = resample(np.asarray(audio, dtype=np.float32), sample_rate, PROMPT_SAMPLE_RATE)
    trimmed = preprocess_wav(wav)  # volume normalized, long pauses removed
    # Very short clips can lose everything to the pause trimmer; keep them whole.
    return trimmed if trimmed.size >= PROMPT_SAMPLE_RATE // 2 else wav


def embed(audio: np.ndarray, sample_rate: int = PROMPT_SAMPLE_RATE) -> np.ndarray:
    embedding: np.ndarray = np.asarray(_load().embed_utterance(_prepared(audio, sample_rate)), dtype=np.float32)
    return embedding


def embed_with_partials(audio: np.ndarray, sample_rate: int = PROMPT_SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """The utterance embedding and those of its ~1.6 s windows (for consistency checks)."""
    embedding, partials, _ = _load().embed_utterance(_prepared(audio, sample_rate), return_partials=True)
    return embedding.astype(np.float32), partials.astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings, in [-1, 1]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denominator) if denominator else 0.0
