"""Monitor-wall segmentation: split a recording of a video wall (or a multi-view DVR output) into cells,
each scored as its own camera.

* :class:`GridSpec` is a grid from config: even rows x cols, each cell inset by ``margin_px``.
* :func:`detect_grid` finds the separators from the frames themselves: columns (rows) of pixels that are
  nearly uniform across the whole height (width) of the image in every sampled frame, i.e. the lines or
  borders a wall draws between its views. Evenly spaced candidate grids are matched against them and the
  largest fully supported one wins; its cell boxes are snapped to the separators actually found.
* :func:`cell_signal` tells a black or frozen cell (lost feed) from a live one, so it is reported and not
  scored.
* :func:`compose_wall` tiles frames into a wall (tests and the demo input).

Boxes are pixel coordinates with exclusive ends: ``rgb[y0:y1, x0:x1]``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

CellSignal = Literal["ok", "black", "frozen"]


@dataclass(frozen=True, slots=True)
class CellBox:
    row: int
    col: int
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width_px(self) -> int:
        return self.x1 - self.x0

    @property
    def height_px(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True, slots=True)
class GridSpec:
    rows: int
    cols: int
    margin_px: int = 0

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.margin_px, bool) or not isinstance(self.margin_px, int) or self.margin_px < 0:
            raise InvalidInputError(f"margin_px must be an integer >= 0, got {self.margin_px!r}")

    def cell_boxes(self, width: int, height: int) -> list[CellBox]:
        """Row-major boxes. Without margin they tile the frame exactly (edges at round(i * size / n));
        ``margin_px`` insets every cell on all four sides (trims borders and bezels)."""
        if width < 1 or height < 1:
            raise InvalidInputError(f"frame size must be positive, got {width}x{height}")
        xs = _even_edges(width, self.cols)
        ys = _even_edges(height, self.rows)
        m = self.margin_px
        smallest_w = min(b - a for a, b in itertools.pairwise(xs))
        smallest_h = min(b - a for a, b in itertools.pairwise(ys))
        if smallest_w - 2 * m < 1 or smallest_h - 2 * m < 1:
            raise InvalidInputError(
                f"margin_px={m} leaves no pixels in a {smallest_w}x{smallest_h} cell "
                f"({self.rows}x{self.cols} grid on {width}x{height})"
            )
        return [
            CellBox(r, c, xs[c] + m, ys[r] + m, xs[c + 1] - m, ys[r + 1] - m)
            for r in range(self.rows)
            for c in range(self.cols)
        ]


def _even_edges(size: int, parts: int) -> list[int]:
    if parts > size:
        raise InvalidInputError(f"cannot split {size} px into {parts} parts")
    return [round(i * size / parts) for i in range(parts + 1)]


def grid_shape(boxes: Sequence[CellBox]) -> tuple[int, int]:
    """(rows, cols) of a box list."""
    return (max(b.row for b in boxes) + 1, max(b.col for b in boxes) + 1)


def split_frame(rgb: np.ndarray, boxes: Sequence[CellBox]) -> list[np.ndarray]:
    """Views (no copy) of ``rgb`` for each box, in box order."""
    h, w = rgb.shape[:2]
    out = []
    for b in boxes:
        if not (0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h):
            raise InvalidInputError(f"box {b} does not fit a {w}x{h} frame")
        out.append(rgb[b.y0 : b.y1, b.x0 : b.x1])
    return out


# --- composition --------------------------------------------------------------------------------


def wall_boxes(cell_h_px: int, cell_w_px: int, rows: int, cols: int, border_px: int = 4) -> list[CellBox]:
    """Where :func:`compose_wall` puts each cell."""
    step_x = cell_w_px + border_px
    step_y = cell_h_px + border_px
    return [
        CellBox(
            r,
            c,
            border_px + c * step_x,
            border_px + r * step_y,
            border_px + c * step_x + cell_w_px,
            border_px + r * step_y + cell_h_px,
        )
        for r in range(rows)
        for c in range(cols)
    ]


def compose_wall(
    frames_by_cell: list[np.ndarray],
    rows: int,
    cols: int,
    border_px: int = 4,
    border_rgb: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Tile same-sized RGB frames row-major into a wall with ``border_px`` separator lines between
    cells and around the edge. Missing cells (fewer frames than rows*cols) stay border-coloured."""
    if rows < 1 or cols < 1:
        raise InvalidInputError(f"rows and cols must be >= 1, got {rows}x{cols}")
    if border_px < 0:
        raise InvalidInputError(f"border_px must be >= 0, got {border_px}")
    if not frames_by_cell:
        raise InvalidInputError("compose_wall needs at least one frame")
    if len(frames_by_cell) > rows * cols:
        raise InvalidInputError(f"{len(frames_by_cell)} frames do not fit a {rows}x{cols} wall")
    shape = frames_by_cell[0].shape
    if len(shape) != 3 or shape[2] != 3:
        raise InvalidInputError(f"frames must be HxWx3 RGB, got shape {shape}")
    for i, frame in enumerate(frames_by_cell):
        if frame.shape != shape:
            raise InvalidInputError(f"frame {i} has shape {frame.shape}, expected {shape} (resize cells first)")
    cell_h, cell_w = shape[:2]
    wall = np.empty((rows * cell_h + (rows + 1) * border_px, cols * cell_w + (cols + 1) * border_px, 3), dtype=np.uint8)
    wall[:] = np.asarray(border_rgb, dtype=np.uint8)
    for frame, box in zip(frames_by_cell, wall_boxes(cell_h, cell_w, rows, cols, border_px), strict=False):
        wall[box.y0 : box.y1, box.x0 : box.x1] = frame
    return wall


# --- detection ----------------------------------------------------------------------------------


def _luma(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidInputError(f"frames must be HxWx3 RGB, got shape {rgb.shape}")
    f = rgb.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _separator_profile(lumas: np.ndarray, axis: int, tol: float, min_fraction: float, drift: float) -> np.ndarray:
    """Boolean per line (column if axis=0, row if axis=1): in every frame at least ``min_fraction``
    of its pixels lie within ``tol`` of the line's median (uniform, allowing overlays and a little
    compression noise), and that median moves by at most ``drift`` over the frames (static)."""
    # lumas: (T, H, W); reduce over the pixels along the line.
    pixel_axis = 1 + axis
    med = np.median(lumas, axis=pixel_axis, keepdims=True)
    close = np.abs(lumas - med) <= tol
    uniform = (close.mean(axis=pixel_axis) >= min_fraction).all(axis=0)
    med = np.squeeze(med, axis=pixel_axis)
    static = (med.max(axis=0) - med.min(axis=0)) <= drift
    return np.asarray(uniform & static)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    diff = np.diff(padded)
    starts = np.flatnonzero(diff == 1)
    ends = np.flatnonzero(diff == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _fit_axis(mask: np.ndarray, max_parts: int, tol_px: int, min_cell_px: int) -> list[tuple[int, int]]:
    """Cell spans along one axis: the active area is what lies inside the edge runs; the largest
    count of even parts whose every interior boundary falls on (or within ``tol_px`` of) a separator
    run wins, and the cells are the gaps between the matched runs."""
    size = len(mask)
    runs = _runs(mask)
    lo, hi = 0, size
    interior = []
    for start, end in runs:
        if start == 0:
            lo = end
        elif end == size:
            hi = start
        else:
            interior.append((start, end))
    if hi - lo < min_cell_px:
        return [(0, size)]
    best: list[tuple[int, int]] = [(lo, hi)]
    for parts in range(2, max_parts + 1):
        if (hi - lo) / parts < min_cell_px:
            break
        matched = []
        for i in range(1, parts):
            expected = lo + i * (hi - lo) / parts
            near = [r for r in interior if r[0] - tol_px <= expected <= r[1] + tol_px]
            if not near:
                break
            distances = [abs((r[0] + r[1]) / 2 - expected) for r in near]
            matched.append(near[distances.index(min(distances))])
        if len(matched) != parts - 1 or len(set(matched)) != parts - 1:
            continue
        edges = [lo, *[v for r in matched for v in r], hi]
        spans = [(edges[2 * i], edges[2 * i + 1]) for i in range(parts)]
        if min(b - a for a, b in spans) >= min_cell_px:
            best = spans
    return best


def detect_grid(
    frames: list[np.ndarray],
    max_rows: int = 4,
    max_cols: int = 4,
    *,
    uniform_tol: float = 12.0,
    min_uniform_fraction: float = 0.97,
    max_drift: float = 8.0,
) -> list[CellBox]:
    """Detect a monitor wall's cells from a few frames of it (spread over a few seconds, so content
    that happens to be uniform for a moment is unlikely to pass as a separator). Returns row-major
    boxes (:func:`grid_shape` gives rows x cols); one box over the whole active area (or the whole
    frame) when no grid is found."""
    if not frames:
        raise InvalidInputError("detect_grid needs at least one frame")
    if max_rows < 1 or max_cols < 1:
        raise InvalidInputError(f"max_rows and max_cols must be >= 1, got {max_rows}, {max_cols}")
    shape = frames[0].shape
    if any(f.shape != shape for f in frames):
        raise InvalidInputError("all frames must have the same shape")
    lumas = np.stack([_luma(f) for f in frames])  # (T, H, W)
    h, w = lumas.shape[1:]
    col_mask = _separator_profile(lumas, axis=0, tol=uniform_tol, min_fraction=min_uniform_fraction, drift=max_drift)
    row_mask = _separator_profile(lumas, axis=1, tol=uniform_tol, min_fraction=min_uniform_fraction, drift=max_drift)
    xs = _fit_axis(col_mask, max_cols, tol_px=max(2, round(0.02 * w)), min_cell_px=max(8, w // 20))
    ys = _fit_axis(row_mask, max_rows, tol_px=max(2, round(0.02 * h)), min_cell_px=max(8, h // 20))
    boxes = [CellBox(r, c, x0, y0, x1, y1) for r, (y0, y1) in enumerate(ys) for c, (x0, x1) in enumerate(xs)]
    logger.info("detect_grid: %dx%d cells in a %dx%d frame", len(ys), len(xs), w, h)
    return boxes


# --- signal ---------------------------------------------------------------------------------------


def cell_signal(
    cells_over_time: Sequence[np.ndarray] | np.ndarray,
    *,
    black_max_luma: float = 16.0,
    frozen_max_diff: int = 3,
) -> CellSignal:
    """``black`` when every sampled frame's mean luminance is below ``black_max_luma``; ``frozen``
    when no pixel changes by more than ``frozen_max_diff`` levels between any two consecutive sampled
    frames (a live camera's sensor noise alone exceeds that); otherwise ``ok``. One frame can be
    black but never frozen."""
    frames = list(cells_over_time)
    if not frames:
        raise InvalidInputError("cell_signal needs at least one frame")
    if max(float(_luma(f).mean()) for f in frames) < black_max_luma:
        return "black"
    if len(frames) >= 2:
        max_diff = max(
            int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in itertools.pairwise(frames)
        )
        if max_diff <= frozen_max_diff:
            return "frozen"
    return "ok"
