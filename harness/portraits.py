"""Real photographs for talking-head tests: sample images that ship inside
the scikit-image and matplotlib wheels (no downloads)."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image


@functools.cache
def astronaut() -> np.ndarray:
    """Eileen Collins, 512 x 512, smiling with her teeth showing."""
    from skimage import data

    return data.astronaut()


@functools.cache
def grace_hopper() -> np.ndarray:
    """Grace Hopper, 512 x 600, mouth closed."""
    import matplotlib.cbook

    with open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


@functools.cache
def coffee() -> np.ndarray:
    """A cup of coffee: no face."""
    from skimage import data

    return data.coffee()


@functools.cache
def cat() -> np.ndarray:
    """Chelsea the cat: a face, but not a human one."""
    from skimage import data

    return data.chelsea()


def two_people() -> np.ndarray:
    """Grace Hopper and, smaller, the astronaut side by side."""
    canvas = Image.new("RGB", (1536, 600), (200, 200, 210))
    canvas.paste(Image.fromarray(grace_hopper()), (0, 0))
    canvas.paste(Image.fromarray(astronaut()).resize((400, 400)), (700, 100))
    return np.asarray(canvas)


def encoded(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()
