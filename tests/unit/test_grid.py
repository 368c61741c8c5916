"""actors.grid: cell boxes, frame splitting, monitor-wall detection on real CCTV frames, no-signal cells."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np
import pytest

from actors.grid import (
    CellBox,
    GridSpec,
    cell_signal,
    compose_wall,
    detect_grid,
    grid_shape,
    split_frame,
    wall_boxes,
)
from nexara.media import sample_clip

pytestmark = pytest.mark.unit

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CLIPS_DIR = SHARED / "data" / "surveillance-fight"
CELL_HW = (120, 160)
N_FRAMES = 3


@functools.lru_cache(maxsize=1)
def real_cell_frames() -> tuple[np.ndarray, ...]:
    """(N_FRAMES, 120, 160, 3) per clip, from 9 different real clips (both labels)."""
    with (CLIPS_DIR / "clips.csv").open() as f:
        rows = list(csv.DictReader(f))
    picked = [r["clip"] for r in rows if r["label"] == "noFight"][:5] + [
        r["clip"] for r in rows if r["label"] == "fight"
    ][:4]
    return tuple(sample_clip(CLIPS_DIR / clip, num_frames=N_FRAMES, size_hw=CELL_HW).frames for clip in picked)


@pytest.fixture
def clips() -> tuple[np.ndarray, ...]:
    if not (CLIPS_DIR / "clips.csv").is_file():
        pytest.skip(f"shared clips not found at {CLIPS_DIR}")
    return real_cell_frames()


def coverage(boxes: list[CellBox], width: int, height: int) -> np.ndarray:
    count = np.zeros((height, width), dtype=np.int32)
    for b in boxes:
        count[b.y0 : b.y1, b.x0 : b.x1] += 1
    return count


@pytest.mark.parametrize(("rows", "cols", "width", "height"), [(1, 1, 64, 48), (2, 2, 641, 481), (3, 4, 1920, 1080)])
def test_cell_boxes_tile_the_frame_exactly(rows: int, cols: int, width: int, height: int) -> None:
    boxes = GridSpec(rows, cols).cell_boxes(width, height)
    assert len(boxes) == rows * cols and grid_shape(boxes) == (rows, cols)
    assert [(b.row, b.col) for b in boxes] == [(r, c) for r in range(rows) for c in range(cols)]
    assert (coverage(boxes, width, height) == 1).all()
    widths = {b.width_px for b in boxes}
    assert max(widths) - min(widths) <= 1


def test_cell_boxes_with_margin_are_inset_tiles() -> None:
    plain = GridSpec(3, 3).cell_boxes(300, 200)
    inset = GridSpec(3, 3, margin_px=5).cell_boxes(300, 200)
    for p, m in zip(plain, inset, strict=True):
        assert (m.x0, m.y0, m.x1, m.y1) == (p.x0 + 5, p.y0 + 5, p.x1 - 5, p.y1 - 5)
    count = coverage(inset, 300, 200)
    assert count.max() == 1
    # what the margins remove is exactly a 5 px band around each tile
    assert int((count == 0).sum()) == sum(
        p.width_px * p.height_px - m.width_px * m.height_px for p, m in zip(plain, inset, strict=True)
    )


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"rows": 0, "cols": 1}, "rows"),
        ({"rows": 1, "cols": -2}, "cols"),
        ({"rows": 1, "cols": 1, "margin_px": -1}, "margin_px"),
    ],
)
def test_gridspec_validation(kw: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GridSpec(**kw)


def test_margin_too_large_is_rejected() -> None:
    with pytest.raises(ValueError, match="margin_px"):
        GridSpec(2, 2, margin_px=30).cell_boxes(100, 100)


def test_split_frame_returns_cell_contents() -> None:
    rng = np.random.default_rng(0)
    cells = [rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8) for _ in range(6)]
    wall = compose_wall(cells, 2, 3, border_px=3)
    assert wall.shape == (2 * 30 + 3 * 3, 3 * 40 + 4 * 3, 3)
    boxes = wall_boxes(30, 40, 2, 3, border_px=3)
    for got, want in zip(split_frame(wall, boxes), cells, strict=True):
        np.testing.assert_array_equal(got, want)
    # border pixels are border-coloured
    assert (wall[:3] == 0).all() and (wall[:, 43:46] == 0).all()
    with pytest.raises(ValueError, match="does not fit"):
        split_frame(wall, [CellBox(0, 0, 0, 0, 1000, 10)])


@pytest.mark.parametrize(("rows", "cols"), [(2, 2), (3, 3), (1, 1), (2, 3)])
def test_detect_grid_on_real_walls(clips: tuple[np.ndarray, ...], rows: int, cols: int) -> None:
    n = rows * cols
    walls = [compose_wall([clip[t] for clip in clips[:n]], rows, cols, border_px=4) for t in range(N_FRAMES)]
    boxes = detect_grid(walls)
    assert grid_shape(boxes) == (rows, cols)
    expected = wall_boxes(*CELL_HW, rows, cols, border_px=4)
    for got, want in zip(boxes, expected, strict=True):
        assert (got.row, got.col) == (want.row, want.col)
        for a, b in ((got.x0, want.x0), (got.y0, want.y0), (got.x1, want.x1), (got.y1, want.y1)):
            assert abs(a - b) <= 3, (got, want)
    # the detected boxes cut out the composed cells
    for cell, clip in zip(split_frame(walls[0], boxes), clips[:n], strict=True):
        if cell.shape == clip[0].shape:
            np.testing.assert_array_equal(cell, clip[0])


def test_detect_grid_with_one_frame_and_bright_separators(clips: tuple[np.ndarray, ...]) -> None:
    wall = compose_wall([c[0] for c in clips[:4]], 2, 2, border_px=2, border_rgb=(235, 235, 235))
    assert grid_shape(detect_grid([wall])) == (2, 2)


def test_detect_grid_without_separators_is_one_cell(clips: tuple[np.ndarray, ...]) -> None:
    frames = [clips[0][t] for t in range(N_FRAMES)]
    boxes = detect_grid(frames)
    assert boxes == [CellBox(0, 0, 0, 0, CELL_HW[1], CELL_HW[0])]
    # cap: a 3x3 wall with max 2x2 must not be misread as 2x2
    walls = [compose_wall([clip[t] for clip in clips[:9]], 3, 3) for t in range(N_FRAMES)]
    assert grid_shape(detect_grid(walls, max_rows=2, max_cols=2)) == (1, 1)


def test_black_and_frozen_cells_are_flagged(clips: tuple[np.ndarray, ...]) -> None:
    live = [clips[5][t] for t in range(N_FRAMES)]
    assert cell_signal(live) == "ok"
    black = [np.full((*CELL_HW, 3), 4, dtype=np.uint8) for _ in range(N_FRAMES)]
    assert cell_signal(black) == "black"
    frozen = [clips[6][0].copy() for _ in range(N_FRAMES)]
    assert cell_signal(frozen) == "frozen"
    assert cell_signal(np.stack(frozen[:1])) == "ok"  # one frame cannot be frozen

    # on a wall: the black and frozen cells are reported, the live ones not
    seq = [[clips[i][t] for i in range(4)] for t in range(N_FRAMES)]
    for t in range(N_FRAMES):
        seq[t][1] = black[t]
        seq[t][2] = frozen[t]
    walls = [compose_wall(cells, 2, 2) for cells in seq]
    boxes = detect_grid(walls)
    assert grid_shape(boxes) == (2, 2)
    per_cell = list(zip(*(split_frame(w, boxes) for w in walls), strict=True))
    assert [cell_signal(list(frames)) for frames in per_cell] == ["ok", "black", "frozen", "ok"]
