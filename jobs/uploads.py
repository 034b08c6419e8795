"""Checks on uploaded files that are cheap enough for the web process.

The image's format and dimensions come from its header (Pillow reads a few
hundred bytes), so a decompression bomb with huge declared dimensions is
refused before any pixel is decoded; then the pixels are decoded once (JPEG
at 1/8 scale) so a corrupt or truncated file is refused at submit. Audio is
only size-checked here: FFmpeg never runs in the web process; the worker's
first stage decodes it (``audio_unreadable``, ``audio_too_long``).
The client's file name and declared content type are never trusted.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from core.errors import ApplicationError

IMAGE_TYPES = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}


@dataclass(frozen=True)
class ImageFacts:
    format: str  # JPEG, PNG, WEBP
    extension: str
    width: int
    height: int
    size_bytes: int
    sha256: str

    def public(self) -> dict:
        return {
            "format": self.format.lower(),
            "width": self.width,
            "height": self.height,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class AudioFacts:
    size_bytes: int
    sha256: str

    def public(self) -> dict:
        return {"size_bytes": self.size_bytes, "sha256": self.sha256}


def _too_large(role: str, size: int, limit: int) -> ApplicationError:
    return ApplicationError(
        "file_too_large",
        f"The {role} file is {size} bytes; the limit is {limit}.",
        status=413,
        details={"field": role, "size_bytes": size, "limit_bytes": limit},
    )


def file_sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def image_check(upload: UploadedFile) -> ImageFacts:
    from PIL import Image, UnidentifiedImageError

    assert upload.size is not None  # set on every uploaded file
    if upload.size > settings.TALKING_HEAD_MAX_IMAGE_BYTES:
        raise _too_large("image", upload.size, settings.TALKING_HEAD_MAX_IMAGE_BYTES)
    if upload.size == 0:
        raise ApplicationError("image_unreadable", "The image file is empty.", status=422, details={"field": "image"})
    limit = settings.TALKING_HEAD_MAX_IMAGE_SIDE
    upload.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(upload, formats=None) as image:
                kind = image.format or ""
                if kind not in IMAGE_TYPES:
                    raise ApplicationError(
                        "unsupported_image_type",
                        f"The image is {kind or 'of an unknown type'}; send JPEG, PNG or WebP.",
                        status=422,
                        details={"field": "image", "detected": kind.lower() or None, "allowed": ["jpeg", "png", "webp"]},
                    )
                width, height = image.size
                if max(width, height) > limit:
                    raise ApplicationError(
                        "image_too_large",
                        f"The image is {width}x{height} px; at most {limit} px a side.",
                        status=422,
                        details={"field": "image", "width": width, "height": height, "limit_px": limit},
                    )
                if kind == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # the whole stream, 1/64 the pixels
                image.load()
    except ApplicationError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow refuses absurd declared sizes at open, before decoding.
        raise ApplicationError(
            "image_too_large",
            f"The image declares more pixels than allowed (at most {limit} px a side).",
            status=422,
            details={"field": "image", "limit_px": limit},
        ) from None
    except UnidentifiedImageError as exc:
        raise ApplicationError(
            "image_unreadable",
            f"The file is not an image that can be read ({type(exc).__name__}).",
            status=422,
            details={"field": "image"},
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt pixel data
        raise ApplicationError(
            "image_unreadable",
            f"The image data is corrupt or truncated ({type(exc).__name__}).",
            status=422,
            details={"field": "image"},
        ) from None
    extension, _ = IMAGE_TYPES[kind]
    return ImageFacts(kind, extension, width, height, upload.size, file_sha256(upload))


def audio_check(upload: UploadedFile) -> AudioFacts:
    assert upload.size is not None  # set on every uploaded file
    if upload.size > settings.TALKING_HEAD_MAX_AUDIO_BYTES:
        raise _too_large("audio", upload.size, settings.TALKING_HEAD_MAX_AUDIO_BYTES)
    if upload.size == 0:
        raise ApplicationError("audio_unreadable", "The audio file is empty.", status=422, details={"field": "audio"})
    return AudioFacts(upload.size, file_sha256(upload))
