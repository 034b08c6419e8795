"""``builtin``: a CPU talking head that runs offline.

Sonic's pipeline, with a puppet where Sonic has a diffusion model: face crop
with ``expand_ratio``; audio features at the frame rate; per-frame mouth and
jaw motion driven by them (open / wide / round shapes), closed in silences;
blinks and light head motion; temporal smoothing and lip-sync correction;
H.264 + AAC. Each frame is one displacement-field contraction and one bilinear
resampling of the head's region (torch), plus a painted mouth interior.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engines.errors import EngineOutOfMemory, PermanentEngineError
from engines.video import rig as rigging
from engines.video.base import FaceBox, ProgressCallback, TalkingHeadEngine, TalkingHeadRequest, TalkingHeadResult
from engines.video.features import ANALYSIS_RATE, MouthTrack, frame_count, mouth_track
from engines.video.inputs import decode_speech, load_portrait
from engines.video.media import probe_video, write_mp4

_BLOCK_FRAMES = 25  # progress is reported per block of frames
_MAX_AUDIO_S = 3600.0  # the job service enforces the real limit before this runs

# Mouth interior colours (RGB).
_CAVITY_TOP, _CAVITY_BOTTOM = np.array([84, 34, 38.0]), np.array([120, 52, 58.0])  # shadow above, tongue below
_TEETH = np.array([212, 204, 192.0])


class BuiltinEngine(TalkingHeadEngine):
    name = "builtin"
    options = frozenset({"dynamic_scale", "motion_scale", "temporal_smoothing", "lip_sync_correction"})

    def _load(self) -> None:
        import torch  # noqa: F401  (warm the import before the first job)

        from engines.video.face import face_models

        face_models()

    def run(self, request: TalkingHeadRequest, progress: ProgressCallback, workdir: Path) -> TalkingHeadResult:
        self.load()
        started = time.perf_counter()
        try:
            return self._render(request, progress, workdir, started)
        except MemoryError:
            raise EngineOutOfMemory(f"Out of memory rendering at {request.resolution} px.") from None

    def _render(self, request: TalkingHeadRequest, progress: ProgressCallback, workdir: Path, started: float) -> TalkingHeadResult:
        progress(2, "detecting face")
        portrait = load_portrait(request.image_path)
        frame, crop, landmarks = _crop_face(portrait, request.face, request.resolution, request.expand_ratio)
        rig = rigging.build_rig(landmarks, request.resolution)
        progress(6, "analyzing audio")
        speech = decode_speech(request.audio_path, max_audio_s=_MAX_AUDIO_S)
        frames = frame_count(speech.size / ANALYSIS_RATE, request.fps)
        track = mouth_track(
            speech,
            fps=request.fps,
            frames=frames,
            temporal_smoothing=request.temporal_smoothing,
            lip_sync_correction=request.lip_sync_correction,
        )
        coefficients = _coefficients(track, rig, request)
        output = workdir / "talking-head.mp4"
        from engines.audio.io import decode_audio

        audio, audio_rate = decode_audio(request.audio_path)
        progress(10, "rendering")
        rendered = _frames(frame, rig, coefficients, progress=progress, total=frames)
        write_mp4(output, rendered, fps=request.fps, size=request.resolution, audio=audio, audio_rate=audio_rate)
        info = probe_video(output)
        elapsed = time.perf_counter() - started
        return TalkingHeadResult(
            path=output,
            duration_s=round(info.duration_s, 3),
            size_bytes=output.stat().st_size,
            width=info.width,
            height=info.height,
            fps=info.fps,
            frames=info.frames,
            info={
                "crop": crop,
                "motion_box": list(rig.head_mask_box),
                "render_s": round(elapsed, 2),
                "render_fps": round(frames / max(elapsed, 1e-6), 1),
            },
        )


def _crop_face(portrait: np.ndarray, face: FaceBox, size: int, expand_ratio: float) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """Sonic-style square crop: the face fills (1 - 2 x expand_ratio) of the
    side, a little above centre to leave room for the hair; kept inside the
    picture. Returns the resized crop, the crop box and the landmarks in it."""
    from PIL import Image

    from engines.video.face import FACE_OVAL, face_models

    models = face_models()
    candidates = models.detect(portrait)
    if not candidates:
        raise PermanentEngineError("No face was found in the image.", code="face_not_detected")
    detection = min(candidates, key=lambda c: abs(c.box.left - face.left) + abs(c.box.top - face.top) - c.box.area * 1e-9)
    landmarks, _ = models.landmarks(portrait, detection)
    height, width = portrait.shape[:2]
    # Sonic's rule: the face's box grown by expand_ratio of its size on every
    # side, then squared. The box is the face oval (forehead to chin, ear to ear).
    oval = landmarks[list(FACE_OVAL)]
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    side = min(max(x1 - x0, y1 - y0) * (1 + 2 * expand_ratio), width, height)
    center_x, center_y = (x0 + x1) / 2, (y0 + y1) / 2
    left = float(np.clip(center_x - side / 2, 0, width - side))
    top = float(np.clip(center_y - side / 2, 0, height - side))
    crop = Image.fromarray(portrait).resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    scale = size / side
    in_crop = (landmarks - [left, top]) * scale
    return np.asarray(crop), {"left": round(left), "top": round(top), "side": round(side)}, in_crop


def _coefficients(track: MouthTrack, rig: rigging.Rig, request: TalkingHeadRequest) -> np.ndarray:
    """Frames x BASES: mouth shapes from the audio, blinks, head motion."""
    frames, fps = track.frames, request.fps
    coefficients = np.zeros((frames, rigging.BASES), np.float32)
    coefficients[:, rigging.CLOSE] = 1.0
    strength = request.dynamic_scale
    coefficients[:, rigging.OPEN] = np.clip(track.open * strength, 0, 1.6)
    coefficients[:, rigging.WIDE] = np.clip(track.wide * strength, 0, 1.6)
    coefficients[:, rigging.ROUND] = np.clip(track.round * strength, 0, 1.6)
    blinks = _blinks(frames, fps, seed=request.seed)
    coefficients[:, rigging.BLINK_RIGHT] = coefficients[:, rigging.BLINK_LEFT] = blinks
    turn, shift_x, shift_y = _head_motion(track, fps, rig, seed=request.seed, scale=request.motion_scale)
    coefficients[:, rigging.TURN], coefficients[:, rigging.SHIFT_X], coefficients[:, rigging.SHIFT_Y] = turn, shift_x, shift_y
    return coefficients


def _blinks(frames: int, fps: int, *, seed: int) -> np.ndarray:
    """A blink every 2.5-5.5 s (people blink 10-20 times a minute), ~180 ms each."""
    rng = np.random.default_rng(seed + 1)
    track = np.zeros(frames, np.float32)
    profile = np.interp(np.linspace(0, 1, max(3, round(0.18 * fps))), [0, 0.35, 0.55, 1], [0.3, 1, 1, 0.2])
    at = rng.uniform(0.8, 2.5)
    while (start := int(at * fps)) < frames:
        end = min(frames, start + profile.size)
        track[start:end] = np.maximum(track[start:end], profile[: end - start])
        at += rng.uniform(2.5, 5.5)
    return track


def _head_motion(track: MouthTrack, fps: int, rig: rigging.Rig, *, seed: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow sway (a few incommensurate sines) that livens up while speaking,
    and small nods on emphasis."""
    rng = np.random.default_rng(seed)
    t = np.arange(track.frames) / fps
    activity = _moving_average(track.open, np.ones(max(1, fps)))

    def sway(amplitude: float) -> np.ndarray:
        freqs, phases = rng.uniform(0.07, 0.35, 3), rng.uniform(0, 2 * math.pi, 3)
        wave = sum(np.sin(2 * math.pi * f * t + p) for f, p in zip(freqs, phases, strict=True)) / 3
        motion: np.ndarray = amplitude * wave * (0.6 + 0.6 * activity)
        return motion

    s = rig.face_height
    turn = sway(math.radians(1.6)) * scale
    shift_x = sway(0.012 * s) * scale
    nod = _moving_average(track.open, np.hanning(max(3, fps // 3))) * (np.hanning(max(3, fps // 3)).sum() / (fps / 6))
    shift_y = (sway(0.008 * s) + 0.012 * s * nod) * scale
    return turn, shift_x, shift_y


def _moving_average(track: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Weighted moving average, same length as ``track`` even when the
    kernel is longer than the clip (edges repeat)."""
    kernel = kernel / kernel.sum()
    radius = kernel.size // 2
    padded = np.pad(track, (radius, kernel.size - 1 - radius), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _frames(
    frame: np.ndarray,
    rig: rigging.Rig,
    coefficients: np.ndarray,
    *,
    progress: ProgressCallback,
    total: int,
) -> Iterator[np.ndarray]:
    import torch
    import torch.nn.functional as functional

    height, width = rig.shape
    top, left = rig.top, rig.left
    region = torch.from_numpy(np.array(frame[top : top + height, left : left + width])).permute(2, 0, 1)[None].float()
    # grid_sample wants source positions in [-1, 1]: fold that scaling (and
    # the minus of backward mapping) into the bases once.
    scale = torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)])
    bases = (torch.from_numpy(rig.bases) * -scale).reshape(rigging.BASES, -1)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    identity = (torch.stack([xs, ys], dim=-1) * scale - 1).reshape(-1)
    with torch.inference_mode():
        for index in range(total):
            if index % _BLOCK_FRAMES == 0:
                progress(10 + 85 * index // max(total, 1), "rendering")
            # Backward mapping: each output pixel samples where its content came from.
            grid = torch.addmv(identity, bases.T, torch.from_numpy(coefficients[index])).reshape(1, height, width, 2)
            warped = functional.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=True)
            pixels = warped[0].round_().clamp_(0, 255).to(torch.uint8).numpy()
            out = frame.copy()
            out[top : top + height, left : left + width] = pixels.transpose(1, 2, 0)
            upper, lower = rigging.mouth_polygon(rig, coefficients[index])
            _paint_mouth(out, upper, lower, rig.face_height)
            yield out
    progress(95, "encoding")


def _paint_mouth(out: np.ndarray, upper: np.ndarray, lower: np.ndarray, face_height: float) -> None:
    """Fill the gap between the parted lips: a dark cavity, the upper teeth
    under the upper lip and a hint of the lower ones. Antialiased by
    rasterizing at 4x and averaging."""
    gap = float(np.max(lower[:, 1] - upper[:, 1]))
    if gap < 0.8:
        return
    from PIL import Image, ImageDraw

    polygon = np.concatenate([upper, lower[::-1]])
    left, top = np.floor(polygon.min(0)).astype(int) - 1
    right, bottom = np.ceil(polygon.max(0)).astype(int) + 2
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, out.shape[1]), min(bottom, out.shape[0])
    if right - left < 2 or bottom - top < 2:
        return
    factor = 4
    canvas = Image.new("L", ((right - left) * factor, (bottom - top) * factor), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in ((polygon - [left, top]) * factor + factor / 2 - 0.5)], fill=255)
    alpha = np.asarray(canvas.reduce(factor), np.float32)[..., np.newaxis] / 255.0
    ys = np.arange(top, bottom, dtype=np.float32)[:, np.newaxis]
    xs = np.arange(left, right, dtype=np.float32)[np.newaxis, :]
    upper_y = np.interp(xs, *_by_x(upper))
    lower_y = np.interp(xs, *_by_x(lower))
    depth = np.clip((ys - upper_y) / np.maximum(lower_y - upper_y, 1), 0, 1)[..., np.newaxis]
    shadow = _CAVITY_TOP * (1 - depth * 0.5)
    tongue = _CAVITY_TOP * 0.7 + (_CAVITY_BOTTOM - _CAVITY_TOP * 0.7) * (depth - 0.6) / 0.4
    colour = np.where(depth < 0.6, shadow, tongue)
    middle, half_width = (upper[0, 0] + upper[-1, 0]) / 2, max(abs(upper[-1, 0] - upper[0, 0]) / 2, 1)
    # Teeth show most in the middle of the mouth, less toward the corners.
    teeth_height = min(0.04 * face_height, 0.38 * gap) * np.clip(1 - (np.abs(xs - middle) / (0.75 * half_width)) ** 2, 0, 1)
    upper_teeth = np.clip((upper_y + teeth_height - ys) / 1.5, 0, 1)[..., np.newaxis]
    lower_teeth = np.clip((ys - (lower_y - 0.15 * teeth_height)) / 1.5, 0, 1)[..., np.newaxis] * 0.7
    teeth = np.maximum(upper_teeth, lower_teeth)
    colour = colour * (1 - teeth) + _TEETH * teeth * (0.85 + 0.15 * (1 - depth))
    patch = out[top:bottom, left:right].astype(np.float32)
    out[top:bottom, left:right] = (patch * (1 - alpha) + colour * alpha).round().astype(np.uint8)


def _by_x(contour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(contour[:, 0])
    return contour[order, 0], contour[order, 1]
