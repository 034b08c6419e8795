"""The talking-head engine contract.

Engines receive plain dataclasses and file paths (the job's input image and
audio, already checked by ``engines.video.inputs``) and return the path of an
H.264 + AAC MP4 in ``workdir``. Progress goes through the callback they are
given (percent 0-100, stage); the callback raises ``Canceled`` when the job
was canceled, which stops the engine at its next progress point.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from engines.base import Engine

ProgressCallback = Callable[[int, str], None]

RESOLUTIONS = (512, 768, 1024)


@dataclass(frozen=True)
class FaceBox:
    """The face the video is made of, in the input image's pixels."""

    left: float
    top: float
    width: float
    height: float
    score: float = 1.0

    @property
    def area(self) -> float:
        return self.width * self.height

    def as_dict(self) -> dict[str, float]:
        return {
            k: round(v, 2)
            for k, v in {"left": self.left, "top": self.top, "width": self.width, "height": self.height, "score": self.score}.items()
        }


@dataclass(frozen=True)
class TalkingHeadRequest:
    image_path: Path  # JPEG/PNG/WebP, checked (≤ 4096 px a side)
    audio_path: Path  # any audio PyAV decodes; its duration is the video's
    face: FaceBox  # the largest face, found by the input check
    resolution: int = 512  # output is resolution x resolution
    expand_ratio: float = 0.18  # margin around the face in the crop (Sonic's expand_ratio)
    inference_steps: int = 25
    dynamic_scale: float = 1.0  # strength of audio-driven motion (builtin: mouth and jaw; Sonic: all motion)
    motion_scale: float = 1.05  # strength of head motion
    fps: int = 25
    temporal_smoothing: bool = True
    lip_sync_correction: bool = True
    seed: int = 0  # makes head motion and blinks reproducible


@dataclass(frozen=True)
class TalkingHeadResult:
    path: Path  # MP4 (H.264 + AAC) in the workdir
    duration_s: float  # read back from the file
    size_bytes: int
    width: int
    height: int
    fps: float
    frames: int
    content_type: str = "video/mp4"
    # Engine details shown with the result (e.g. render seconds, crop box).
    info: dict[str, Any] = field(default_factory=dict)


class TalkingHeadEngine(Engine, ABC):
    """``load()`` once per process, ``run()`` per job."""

    name: ClassVar[str]
    # Parameters this engine honours beyond resolution/expand_ratio/fps; a
    # non-default value of any other is refused at submit ("unsupported_option").
    options: ClassVar[frozenset[str]] = frozenset()
    resolutions: ClassVar[tuple[int, ...]] = RESOLUTIONS
    frame_rates: ClassVar[tuple[int, ...] | None] = None  # None: any fps the API allows

    @abstractmethod
    def run(self, request: TalkingHeadRequest, progress: ProgressCallback, workdir: Path) -> TalkingHeadResult:
        """Render the video. Raise ``EngineOutOfMemory`` when the device ran
        out of memory (the job retries at the next lower resolution),
        ``PermanentEngineError`` for input the engine cannot use,
        ``TransientEngineError`` for a server that is down."""
