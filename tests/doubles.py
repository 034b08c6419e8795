"""Engine test doubles for failure paths (registered by name in tests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from engines.errors import PermanentEngineError, TransientEngineError
from engines.tts.base import SpeechRequest, TTSEngine


class _EnglishOnly(TTSEngine):
    sample_rate = 16000
    _LANGUAGES: ClassVar[frozenset[str]] = frozenset({"en"})

    @classmethod
    def languages(cls) -> frozenset[str]:
        return cls._LANGUAGES


class ExplodingEngine(_EnglishOnly):
    """A buggy engine: raises an unexpected exception."""

    name = "exploding"

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        raise RuntimeError("boom")


class RejectingEngine(_EnglishOnly):
    name = "rejecting"

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        raise PermanentEngineError("This text cannot be spoken.", code="text_rejected")


class UnavailableEngine(_EnglishOnly):
    name = "unavailable"

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        raise TransientEngineError("Model server is down.")


class ToneEngine(_EnglishOnly):
    """Fast deterministic 'speech': 0.1 s of tone per word."""

    name = "tone"

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        words = max(1, len(text.split()))
        t = np.arange(int(self.sample_rate * 0.1 * words / request.speed)) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


class SlowEngine(ToneEngine):
    """Tone, but each chunk takes a while and leaves a scratch file in the
    job's workdir (so tests can cancel mid-run and check the cleanup)."""

    name = "slow"
    chunk_seconds = 0.3
    last_workdir: ClassVar[Path | None] = None

    def run(self, request, progress, workdir: Path):
        SlowEngine.last_workdir = workdir
        (workdir / "scratch.bin").write_bytes(b"\0" * 1024)
        return super().run(request, progress, workdir)

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        time.sleep(self.chunk_seconds)
        return super().synthesize_chunk(text, request)


class StuckEngine(SlowEngine):
    """Slow enough that a test can do anything before it finishes (and cancel it)."""

    name = "stuck"
    chunk_seconds = 5.0


DOUBLES = {
    "exploding": "tests.doubles:ExplodingEngine",
    "rejecting": "tests.doubles:RejectingEngine",
    "unavailable": "tests.doubles:UnavailableEngine",
    "tone": "tests.doubles:ToneEngine",
    "slow": "tests.doubles:SlowEngine",
    "stuck": "tests.doubles:StuckEngine",
}
