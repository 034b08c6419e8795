"""A 2D face rig built from Face Mesh landmarks: displacement fields for the
mouth (open, wide, round), the eyelids (blink) and the head (turn, nod,
shift), and the painting of the open mouth.

Each basis is a dense field over the region it moves, interpolated from
control points with normalized Gaussian weights. A frame's motion is a
weighted sum of the bases, so per frame only one tensor contraction and one
bilinear resampling run. The lips are a seam: the upper and lower parts of
the mouth get separate fields, blended only beyond the mouth corners, so an
opening jaw parts the lips instead of smearing them.

Pixels outside the head's soft mask never move: the background is stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.video import face as fm

# Basis order in the coefficient vector.
OPEN, WIDE, ROUND, BLINK_RIGHT, BLINK_LEFT, TURN, SHIFT_X, SHIFT_Y, CLOSE = range(9)
BASES = 9  # CLOSE's coefficient is always 1: it shuts a mouth the photo shows open
# The head region that may move: the face oval's box grown by these factors
# (hair, ears), feathered over 0.1 face heights. Everything else is static.
HEAD_MASK_SCALE = np.array([1.2, 1.25])
_FEATHER = 0.1

_UPPER_LIP = sorted(set(fm.UPPER_INNER_LIP + fm.UPPER_OUTER_LIP) - {61, 291, 78, 308})
_LOWER_LIP = sorted(set(fm.LOWER_INNER_LIP + fm.LOWER_OUTER_LIP) - {61, 291, 78, 308})
_CORNERS = (61, 291, 78, 308)
_CHIN = (152, 148, 176, 377, 400, 149, 378)
_JAW = {150: 0.65, 379: 0.65, 136: 0.45, 365: 0.45, 172: 0.25, 397: 0.25, 58: 0.1, 288: 0.1}
_STILL_UPPER = (1, 2, 4, 98, 327, 168, 6, 197, 195, 5, 50, 280, 205, 425, 123, 352, 33, 133, 263, 362, 234, 454, 93, 323, 127, 356)
_BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)


@dataclass
class Rig:
    size: int  # output frame side
    top: int  # region of interest (all motion) in frame pixels
    left: int
    bases: np.ndarray  # BASES x H x W x 2 displacement (dx, dy) in pixels
    mouth_upper: np.ndarray  # BASES x 11 x 2 displacement of the upper inner lip points
    mouth_lower: np.ndarray  # BASES x 11 x 2 ... of the lower inner lip points
    upper_inner: np.ndarray  # 11 x 2 rest positions (frame pixels), corner to corner
    lower_inner: np.ndarray
    face_height: float
    head_mask_box: tuple[int, int, int, int]  # left, top, right, bottom: the only pixels that may change

    @property
    def shape(self) -> tuple[int, int]:
        return self.bases.shape[1], self.bases.shape[2]


def build_rig(landmarks: np.ndarray, size: int) -> Rig:
    """``landmarks``: 468 x 2 in output-frame pixels (after crop and resize)."""
    points = landmarks.astype(np.float64)
    face_height = float(np.linalg.norm(points[fm.CHIN] - points[fm.FOREHEAD]))
    oval = points[list(fm.FACE_OVAL)]
    center = oval.mean(axis=0)
    # The head: the face oval grown for hair and ears; everything that may move.
    radii = (oval.max(0) - oval.min(0)) / 2 * HEAD_MASK_SCALE
    margin = _FEATHER * face_height + 2
    left, top = np.floor(np.maximum(center - radii - margin, 0)).astype(int)
    right, bottom = np.ceil(np.minimum(center + radii + margin, size)).astype(int)
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32)
    grid = np.stack([xs, ys], axis=-1)

    bases = np.zeros((BASES, bottom - top, right - left, 2), np.float32)
    upper_pts = np.zeros((BASES, len(fm.UPPER_INNER_LIP), 2))
    lower_pts = np.zeros((BASES, len(fm.LOWER_INNER_LIP), 2))
    mask = _head_mask(grid, center, radii, feather=_FEATHER * face_height)
    _mouth_bases(points, face_height, grid, bases, upper_pts, lower_pts)
    _blink_bases(points, face_height, grid, bases)
    _head_bases(points, face_height, mask, grid, bases, upper_pts, lower_pts)
    bases *= mask[np.newaxis, ..., np.newaxis]  # exactly still outside the head
    return Rig(
        size=size,
        top=int(top),
        left=int(left),
        bases=bases,
        mouth_upper=upper_pts,
        mouth_lower=lower_pts,
        upper_inner=points[list(fm.UPPER_INNER_LIP)],
        lower_inner=points[list(fm.LOWER_INNER_LIP)],
        face_height=face_height,
        head_mask_box=(int(left), int(top), int(right), int(bottom)),
    )


def _rbf_dense(grid: np.ndarray, controls: np.ndarray, displacements: np.ndarray, sigma: float) -> np.ndarray:
    """``_rbf`` over a pixel grid, computed only near the controls (4 sigma
    on, the field is nil) and at a stride of sigma/6 pixels, then bilinearly
    upsampled: the field is smooth at that scale. Exact enough, 20x cheaper."""
    import torch
    import torch.nn.functional as functional

    height, width = grid.shape[:2]
    origin = grid[0, 0]
    low = np.floor(np.maximum(controls.min(0) - 4 * sigma - origin, 0)).astype(int)
    high = np.ceil(np.minimum(controls.max(0) + 4 * sigma - origin + 1, [width, height])).astype(int)
    out = np.zeros((height, width, displacements.shape[-1]), np.float32)
    if np.any(high <= low):
        return out
    step = max(1, int(sigma / 6))
    box = grid[low[1] : high[1], low[0] : high[0]]
    coarse = _rbf(box[::step, ::step], controls, displacements, sigma)
    if step > 1:
        tensor = torch.from_numpy(np.ascontiguousarray(coarse.transpose(2, 0, 1)))[None]
        # Coarse samples sit at every step-th pixel: align_corners maps them exactly.
        size = ((coarse.shape[0] - 1) * step + 1, (coarse.shape[1] - 1) * step + 1)
        fine = functional.interpolate(tensor, size=size, mode="bilinear", align_corners=True)[0].numpy().transpose(1, 2, 0)
        filled = np.zeros((box.shape[0], box.shape[1], coarse.shape[2]), np.float32)
        filled[: fine.shape[0], : fine.shape[1]] = fine
        # The last few rows/columns beyond the last coarse sample: exact.
        if fine.shape[0] < box.shape[0]:
            filled[fine.shape[0] :] = _rbf(box[fine.shape[0] :], controls, displacements, sigma)
        if fine.shape[1] < box.shape[1]:
            filled[:, fine.shape[1] :] = _rbf(box[:, fine.shape[1] :], controls, displacements, sigma)
        coarse = filled
    out[low[1] : high[1], low[0] : high[0]] = coarse
    return out


def _rbf(grid: np.ndarray, controls: np.ndarray, displacements: np.ndarray, sigma: float) -> np.ndarray:
    """Normalized Gaussian interpolation of control displacements; a constant
    background weight makes the field fade to zero away from every control."""
    flat = grid.reshape(-1, 2).astype(np.float64)
    squared = ((flat[:, np.newaxis, :] - controls[np.newaxis, :, :]) ** 2).sum(-1)
    weights = np.exp(-squared / (2 * sigma * sigma))
    background = np.exp(-2.0)  # the weight of a control 2 sigma away
    field = weights @ displacements / (weights.sum(axis=1, keepdims=True) + background)
    result: np.ndarray = field.reshape(*grid.shape[:-1], displacements.shape[-1]).astype(np.float32)
    return result


def _mouth_controls(points: np.ndarray, s: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Control points and, per basis (open, wide, round), their displacements,
    for the upper and the lower part of the mouth (in pixels)."""
    mouth_center = (points[fm.UPPER_LIP_CENTER] + points[fm.LOWER_LIP_CENTER]) / 2

    def toward_center(index: int) -> np.ndarray:
        direction = mouth_center - points[index]
        unit: np.ndarray = direction / max(np.linalg.norm(direction), 1e-6)
        return unit

    def lateral(index: int) -> float:  # -1 at the left corner, +1 at the right
        half_width = max(abs(points[291][0] - points[61][0]) / 2, 1e-6)
        return float(np.clip((points[index][0] - mouth_center[0]) / half_width, -1, 1))

    jaw_drop, spread, pucker = 0.11 * s, 0.045 * s, 0.05 * s
    # How far apart the lips are in the photo, along the mouth: closing it
    # moves the lower lip up two thirds of the gap and the upper one down a third.
    upper_inner, lower_inner = points[list(fm.UPPER_INNER_LIP)], points[list(fm.LOWER_INNER_LIP)]
    gaps = np.clip(lower_inner[:, 1] - upper_inner[:, 1], 0, None)
    center_gap = float(gaps.max())

    def gap_at(index: int) -> float:
        for contour in (fm.UPPER_INNER_LIP, fm.LOWER_INNER_LIP):
            if index in contour:
                return float(gaps[contour.index(index)])
        return center_gap * (1 - abs(lateral(index)))

    zero = np.zeros(2)
    upper, lower = [], []  # (point, open, wide, round, close) displacement rows
    for index in _CORNERS:
        inward = toward_center(index)
        row = (points[index], (inward * 0.08 + [0, 0.35]) * jaw_drop, -inward * spread, inward * pucker, zero)
        upper.append(row)
        lower.append(row)
    for index in _UPPER_LIP:
        # An opening mouth is an ellipse, widest in the middle.
        centrality = float(np.sqrt(1 - lateral(index) ** 2))
        upper.append(
            (
                points[index],
                np.array([0, -0.14]) * jaw_drop * centrality,
                np.array([lateral(index) * 0.5, 0.08]) * spread,
                np.array([-lateral(index) * 0.45, -0.25 * centrality]) * pucker,
                np.array([0, 0.35 * gap_at(index)]),
            )
        )
    for index in _LOWER_LIP:
        centrality = float(np.sqrt(1 - lateral(index) ** 2))
        lower.append(
            (
                points[index],
                np.array([0, 1.0]) * jaw_drop * (0.15 + 0.85 * centrality),
                np.array([lateral(index) * 0.5, -0.08]) * spread,
                np.array([-lateral(index) * 0.45, 0.3 * centrality]) * pucker,
                np.array([0, -0.65 * gap_at(index)]),
            )
        )
    for index in _CHIN:
        lower.append((points[index], np.array([0, 0.95]) * jaw_drop, zero, zero, np.array([0, -0.6 * center_gap])))
    for index, share in _JAW.items():
        lower.append((points[index], np.array([0, share]) * jaw_drop, zero, zero, np.array([0, -0.6 * share * center_gap])))
    for index in _STILL_UPPER:
        upper.append((points[index], zero, zero, zero, zero))
    # The neck stays while the jaw drops over it.
    chin = points[fm.CHIN]
    for dx in (-0.25, 0, 0.25):
        lower.append((chin + np.array([dx, 0.3]) * s, zero, zero, zero, zero))

    def pack(rows: Sequence[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray]:
        controls = np.array([row[0] for row in rows])
        displacements = np.concatenate([np.array([row[k] for row in rows]) for k in (1, 2, 3, 4)], axis=1)  # N x 8
        return controls, displacements

    return {"upper": pack(upper), "lower": pack(lower)}


def _close_exactly(points: np.ndarray, controls: dict[str, tuple[np.ndarray, np.ndarray]], sigma: float, rounds: int = 4) -> None:
    """Interpolation blurs the closing displacements (neighbours average in),
    leaving a sliver of a gap. Feed the remaining gap back into the inner-lip
    controls until the lips meet."""
    upper_inner, lower_inner = points[list(fm.UPPER_INNER_LIP)], points[list(fm.LOWER_INNER_LIP)]
    upper_controls, upper_moves = controls["upper"]
    lower_controls, lower_moves = controls["lower"]
    upper_rows = _rows_of(upper_controls, upper_inner)
    lower_rows = _rows_of(lower_controls, lower_inner)
    for _ in range(rounds):
        upper_at = _rbf(upper_inner, upper_controls, upper_moves[:, 6:8], sigma)[:, 1]
        lower_at = _rbf(lower_inner, lower_controls, lower_moves[:, 6:8], sigma)[:, 1]
        gap = (lower_inner[:, 1] + lower_at) - (upper_inner[:, 1] + upper_at)
        for position, row in enumerate(upper_rows):
            if row >= 0:
                upper_moves[row, 7] += 0.35 * gap[position]
        for position, row in enumerate(lower_rows):
            if row >= 0:
                lower_moves[row, 7] -= 0.65 * gap[position]


def _rows_of(controls: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The control row at each wanted point, or -1 (the shared mouth corners
    are left alone: both halves hold them still)."""
    rows = []
    for point in wanted:
        matches = np.flatnonzero(np.all(np.isclose(controls, point), axis=1))
        rows.append(int(matches[0]) if matches.size == 1 else -1)
    return np.array(rows)


def _mouth_bases(points: np.ndarray, s: float, grid: np.ndarray, bases: np.ndarray, upper_pts: np.ndarray, lower_pts: np.ndarray) -> None:
    controls = _mouth_controls(points, s)
    sigma = 0.055 * s
    _close_exactly(points, controls, sigma)
    upper = _rbf_dense(grid, *controls["upper"], sigma)
    lower = _rbf_dense(grid, *controls["lower"], sigma)
    weight = _below_seam(points, grid, s)[..., np.newaxis]
    for column, basis in enumerate((OPEN, WIDE, ROUND, CLOSE)):
        columns = slice(2 * column, 2 * column + 2)
        bases[basis] = upper[..., columns] * (1 - weight) + lower[..., columns] * weight
        upper_pts[basis] = _rbf(points[list(fm.UPPER_INNER_LIP)], *controls["upper"], sigma)[:, columns]
        lower_pts[basis] = _rbf(points[list(fm.LOWER_INNER_LIP)], *controls["lower"], sigma)[:, columns]


def _below_seam(points: np.ndarray, grid: np.ndarray, s: float) -> np.ndarray:
    """0 above the lips' seam, 1 below: sharp between the mouth corners,
    softening beyond them so the cheeks do not crease."""
    seam = (points[list(fm.UPPER_INNER_LIP)] + points[list(fm.LOWER_INNER_LIP)]) / 2
    order = np.argsort(seam[:, 0])
    xs, ys = seam[order, 0], seam[order, 1]
    x, y = grid[..., 0], grid[..., 1]
    seam_y = np.interp(x, xs, ys)
    beyond = np.maximum(xs[0] - x, 0) + np.maximum(x - xs[-1], 0)
    softness = 0.6 + 0.5 * beyond
    below: np.ndarray = (1 / (1 + np.exp(np.clip(-(y - seam_y) / softness, -60, 60)))).astype(np.float32)
    return below


def _blink_bases(points: np.ndarray, s: float, grid: np.ndarray, bases: np.ndarray) -> None:
    sigma = 0.03 * s
    eyes = (
        (BLINK_RIGHT, fm.RIGHT_EYE_UPPER, fm.RIGHT_EYE_LOWER, fm.RIGHT_EYE_CORNERS),
        (BLINK_LEFT, fm.LEFT_EYE_UPPER, fm.LEFT_EYE_LOWER, fm.LEFT_EYE_CORNERS),
    )
    for basis, upper, lower, corners in eyes:
        up, low = points[list(upper)], points[list(lower)]
        opening = np.clip(np.interp(up[:, 0], *_sorted_xy(low)) - up[:, 1], 0, None)
        controls = np.concatenate(
            [up, up + np.stack([np.zeros_like(opening), opening * 0.5], 1), low, points[list(corners)], points[list(_BROWS)]]
        )
        displacements = np.concatenate(
            [
                np.stack([np.zeros_like(opening), opening], 1),  # the lid comes down over the eye
                np.stack([np.zeros_like(opening), opening * 0.75], 1),
                np.stack([np.zeros(len(low)), -0.1 * opening.mean() * np.ones(len(low))], 1),
                np.zeros((len(corners) + len(_BROWS), 2)),
            ]
        )
        bases[basis] = _rbf_dense(grid, controls, displacements, sigma)


def _sorted_xy(contour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(contour[:, 0])
    return contour[order, 0], contour[order, 1]


def _head_bases(
    points: np.ndarray, s: float, mask: np.ndarray, grid: np.ndarray, bases: np.ndarray, upper_pts: np.ndarray, lower_pts: np.ndarray
) -> None:
    """Turn (radians, about a pivot in the neck) and shift (pixels), inside a
    feathered ellipse around the head."""
    pivot = points[fm.CHIN] + np.array([0, 0.35 * s])
    relative = grid - pivot
    bases[TURN] = np.stack([-relative[..., 1], relative[..., 0]], axis=-1)
    bases[SHIFT_X, ..., 0] = 1
    bases[SHIFT_Y, ..., 1] = 1
    for pts, contour in ((upper_pts, fm.UPPER_INNER_LIP), (lower_pts, fm.LOWER_INNER_LIP)):
        rel = points[list(contour)] - pivot
        pts[TURN] = np.stack([-rel[:, 1], rel[:, 0]], axis=-1)
        pts[SHIFT_X, :, 0] = 1
        pts[SHIFT_Y, :, 1] = 1


def _head_mask(grid: np.ndarray, center: np.ndarray, radii: np.ndarray, feather: float) -> np.ndarray:
    offset = (grid - center) / radii
    distance = (np.sqrt((offset**2).sum(-1)) - 1) * radii.min()  # ~pixels outside the ellipse
    mask: np.ndarray = np.clip(0.5 - distance / (2 * feather), 0, 1).astype(np.float32) ** 1.5
    return mask


def mouth_polygon(rig: Rig, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inner-lip contours (upper, lower; corner to corner) in this frame."""
    upper = rig.upper_inner + np.tensordot(coefficients, rig.mouth_upper, axes=1)
    lower = rig.lower_inner + np.tensordot(coefficients, rig.mouth_lower, axes=1)
    return upper, lower
