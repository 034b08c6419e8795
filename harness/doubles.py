"""Engine test doubles for failure paths (registered by name in tests)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from core.context import job_id_var
from engines.errors import EngineOutOfMemory, PermanentEngineError, TransientEngineError
from engines.tts.base import SpeechRequest, TTSEngine
from engines.video.base import TalkingHeadEngine, TalkingHeadRequest, TalkingHeadResult


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
    job's workdir (so tests can cancel mid-run and check the cleanup).

    With ``MYNAH_TEST_ENGINE_RUNS_DIR`` set, every run in progress is a file
    there named ``<pid>-<job id>.running``, removed when the run returns: a
    test can tell which process is inside an engine run, and with which job."""

    name = "slow"
    chunk_seconds = 0.3
    last_workdir: ClassVar[Path | None] = None

    def run(self, request, progress, workdir: Path):
        SlowEngine.last_workdir = workdir
        (workdir / "scratch.bin").write_bytes(b"\0" * 1024)
        runs_dir = os.environ.get("MYNAH_TEST_ENGINE_RUNS_DIR")
        if not runs_dir:
            return super().run(request, progress, workdir)
        marker = Path(runs_dir) / f"{os.getpid()}-{job_id_var.get()}.running"
        marker.touch()
        try:
            return super().run(request, progress, workdir)
        finally:
            marker.unlink(missing_ok=True)

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        time.sleep(self.chunk_seconds)
        return super().synthesize_chunk(text, request)


class StuckEngine(SlowEngine):
    """Slow enough that a test can do anything before it finishes (and cancel it)."""

    name = "stuck"
    chunk_seconds = 5.0


class GatedEngine(ToneEngine):
    """Tone, made sentence by sentence; every sentence after the first waits
    for ``gate`` (a test opens it). A streamed job's first audio is then
    observably out while the job is still running, without any timing."""

    name = "gated"
    gate: ClassVar[threading.Event] = threading.Event()

    def synthesize_pieces(self, text: str, request: SpeechRequest) -> Iterator[np.ndarray]:
        for index, sentence in enumerate(part for part in text.split(".") if part.strip()):
            if index and not self.gate.wait(timeout=60):
                raise TransientEngineError("The test never opened the gate.")
            yield super().synthesize_chunk(sentence, request)

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        return np.concatenate(list(self.synthesize_pieces(text, request)))


class SmallGpuVideoEngine(TalkingHeadEngine):
    """A talking-head engine on a device that runs out of memory above 512 px
    (as a GPU server reports it); at 512 it renders a real, short MP4 of the
    audio's length (grey frames) so the rest of the job is real."""

    name = "small-gpu"
    max_resolution: ClassVar[int] = 512
    calls: ClassVar[list[int]] = []

    def run(self, request: TalkingHeadRequest, progress, workdir: Path) -> TalkingHeadResult:
        from engines.audio.io import decode_audio
        from engines.video.media import probe_video, write_mp4

        SmallGpuVideoEngine.calls.append(request.resolution)
        if request.resolution > self.max_resolution:
            raise EngineOutOfMemory(f"CUDA out of memory at {request.resolution} px")
        progress(50, "rendering")
        audio, rate = decode_audio(request.audio_path)
        frames = max(1, round(audio.size / rate * request.fps))
        grey = np.full((request.resolution, request.resolution, 3), 128, np.uint8)
        path = workdir / "out.mp4"
        write_mp4(path, (grey for _ in range(frames)), fps=request.fps, size=request.resolution, audio=audio, audio_rate=rate)
        info = probe_video(path)
        return TalkingHeadResult(path, info.duration_s, path.stat().st_size, info.width, info.height, info.fps, info.frames)


class NoMemoryVideoEngine(SmallGpuVideoEngine):
    name = "no-memory"
    max_resolution = 0


DOUBLES = {
    "small-gpu": "harness.doubles:SmallGpuVideoEngine",
    "no-memory": "harness.doubles:NoMemoryVideoEngine",
    "exploding": "harness.doubles:ExplodingEngine",
    "rejecting": "harness.doubles:RejectingEngine",
    "unavailable": "harness.doubles:UnavailableEngine",
    "tone": "harness.doubles:ToneEngine",
    "slow": "harness.doubles:SlowEngine",
    "stuck": "harness.doubles:StuckEngine",
    "gated": "harness.doubles:GatedEngine",
}


def progress_patch(monkeypatch, replacement) -> None:
    """Replace ``job_progress`` everywhere a run calls it (the run, its
    pipelines, and their per-stage progress callbacks)."""
    from jobs.services import pipelines, progress, run

    for module in (progress, pipelines, run):
        monkeypatch.setattr(module, "job_progress", replacement)
