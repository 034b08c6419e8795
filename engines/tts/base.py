"""The TTS engine contract and the chunked synthesis loop all engines share."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from engines.audio.dsp import join_chunks, rms_dbfs
from engines.audio.io import FORMATS, encode_audio, probe_duration
from engines.errors import PermanentEngineError
from engines.text import split_into_chunks

ProgressCallback = Callable[[int, str], None]

# Below this level the output is treated as silence (nothing was spoken).
SILENCE_DBFS = -60.0


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    language: str
    format: str = "wav"
    speed: float = 1.0


@dataclass(frozen=True)
class SpeechResult:
    path: Path
    format: str
    content_type: str
    sample_rate: int
    duration_s: float
    size_bytes: int
    chunks: int


class TTSEngine(ABC):
    """A speech engine: ``load()`` once per process, ``run()`` per job.

    Subclasses implement ``synthesize_chunk``; the shared ``run`` splits the
    text at sentence boundaries, reports progress per chunk, joins the chunks
    without clicks and encodes the requested format.
    """

    name: ClassVar[str]
    sample_rate: ClassVar[int]
    max_chunk_chars: ClassVar[int] = 300

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False

    @classmethod
    @abstractmethod
    def languages(cls) -> frozenset[str]:
        """Language codes this engine speaks. Must be cheap: no model load."""

    @classmethod
    def supports_language(cls, language: str) -> bool:
        return language.lower() in cls.languages()

    def load(self) -> None:
        """Load models once; safe to call from several threads."""
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:  # pragma: no cover - engines without models
        """Heavy, one-time initialization (model files, native libraries)."""

    @abstractmethod
    def synthesize_chunk(self, text: str, *, language: str, speed: float) -> np.ndarray:
        """Synthesize one chunk to float32 mono samples at ``sample_rate``."""

    def run(self, request: SpeechRequest, progress: ProgressCallback, workdir: Path) -> SpeechResult:
        self.load()
        chunks = split_into_chunks(request.text, self.max_chunk_chars)
        if not chunks:
            raise PermanentEngineError("The text contains nothing to speak.", code="empty_text")
        progress(5, "synthesizing")
        pieces = []
        for index, chunk in enumerate(chunks, start=1):
            pieces.append(self.synthesize_chunk(chunk, language=request.language, speed=request.speed))
            progress(5 + (85 * index) // len(chunks), "synthesizing")
        audio = join_chunks(pieces, self.sample_rate)
        if rms_dbfs(audio) < SILENCE_DBFS:
            raise PermanentEngineError("The engine produced no audible speech for this text.", code="no_speech_generated")
        progress(92, "encoding")
        spec = FORMATS[request.format]
        path = workdir / f"speech.{spec.extension}"
        encode_audio(audio, self.sample_rate, path, spec.name)
        return SpeechResult(
            path=path,
            format=spec.name,
            content_type=spec.content_type,
            sample_rate=spec.sample_rate or self.sample_rate,
            duration_s=round(probe_duration(path), 3),
            size_bytes=path.stat().st_size,
            chunks=len(chunks),
        )
