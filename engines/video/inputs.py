"""The first stage of every talking-head job, whatever the engine: decode the
portrait and find the face, decode the audio and measure it.

The web process has already checked the image's format and dimensions (it
never imports the face models or FFmpeg); this stage rejects what only a
decode or a model can tell: no face (``face_not_detected``), audio FFmpeg
cannot read (``audio_unreadable``), audio over the limit (``audio_too_long``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.errors import PermanentEngineError
from engines.video.base import FaceBox
from engines.voice.prompt import PROMPT_SAMPLE_RATE, PromptRejected, decode_prompt

MAX_IMAGE_SIDE = 4096


@dataclass(frozen=True)
class PortraitCheck:
    face: FaceBox  # the largest face
    faces_found: int
    image_width: int
    image_height: int
    warnings: list[str] = field(default_factory=list)


def load_portrait(path: Path) -> np.ndarray:
    """RGB uint8 pixels, upright (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_IMAGE_SIDE:
                raise PermanentEngineError(f"The image is larger than {MAX_IMAGE_SIDE} px a side.", code="image_too_large")
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PermanentEngineError(f"The image cannot be decoded ({type(exc).__name__}).", code="image_unreadable") from None


def decode_speech(path: Path, *, max_audio_s: float) -> np.ndarray:
    """16 kHz mono float32, decoding stopped past ``max_audio_s``."""
    try:
        return decode_prompt(path, max_audio_s=max_audio_s).samples
    except PromptRejected as exc:
        if exc.code == "audio_too_long":
            raise PermanentEngineError(f"The audio is longer than {max_audio_s:g} s.", code="audio_too_long") from None
        raise PermanentEngineError(exc.message, code=exc.code) from None


def check_portrait(image_path: Path) -> PortraitCheck:
    """The face the video is made of: the largest one, with a warning when
    there are several; ``face_not_detected`` when there is none."""
    from engines.video.face import face_models

    rgb = load_portrait(image_path)
    faces = face_models().detect(rgb)
    if not faces:
        raise PermanentEngineError("No face was found in the image. Use a photo with one clearly visible face.", code="face_not_detected")
    return PortraitCheck(
        face=faces[0].box,
        faces_found=len(faces),
        image_width=rgb.shape[1],
        image_height=rgb.shape[0],
        warnings=["multiple_faces"] if len(faces) > 1 else [],
    )


def check_audio(audio_path: Path, *, max_audio_s: float) -> float:
    """The audio's decoded duration in seconds (the video's duration)."""
    samples = decode_speech(audio_path, max_audio_s=max_audio_s)
    if samples.size < PROMPT_SAMPLE_RATE // 10:
        raise PermanentEngineError("The audio is shorter than 0.1 s.", code="audio_too_short")
    return round(samples.size / PROMPT_SAMPLE_RATE, 3)
