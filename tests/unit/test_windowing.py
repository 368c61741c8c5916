"""actors.windowing on its own: frames in, WindowInfo / NoSignal out at the right stream times (no threads,
no Ray, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from actors.grid import CellBox, GridSpec
from actors.records import NoSignal, WindowInfo
from actors.windowing import CellWindower, CutGuard, LiveModel, layout_cells
from nexara.config import WindowsConfig
from nexara.errors import InvalidInputError
from nexara.motion import MotionSpec

pytestmark = pytest.mark.unit

FPS = 10.0
HW = (48, 64)
BOX = CellBox(0, 0, 0, 0, HW[1], HW[0])
FRAMES_ONLY = LiveModel(frames_per_window=4, size_hw=(16, 16), resize="squash", motion=None)


def _noise(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(40, 220, (*HW, 3), dtype=np.uint8)


def _feed(w: CellWindower, frames: list[np.ndarray], t0_s: float = 0.0) -> list[WindowInfo | NoSignal]:
    out = []
    for i, rgb in enumerate(frames):
        got = w.push(rgb, t0_s + i / FPS)
        if got is not None:
            out.append(got)
    return out


def test_windows_every_stride_once_the_ring_is_full_then_faster_while_hot() -> None:
    rng = np.random.default_rng(0)
    w = CellWindower(0, "cam", BOX, FRAMES_ONLY, WindowsConfig(), no_signal_check_s=2.0)
    out = _feed(w, [_noise(rng) for _ in range(51)])  # 0.0 .. 5.0 s
    assert all(isinstance(x, WindowInfo) for x in out)
    assert [x.seq for x in out] == list(range(len(out)))
    assert [round(x.end_s, 3) for x in out] == [2.0, 3.0, 4.0, 5.0]  # window_s, then every stride_s
    assert [round(x.start_s, 3) for x in out] == [0.0, 1.0, 2.0, 3.0]
    first = out[0]
    assert isinstance(first, WindowInfo)
    # T frames at T / window_s fps, the newest last, shared ids with the next window (embedded once)
    assert len(first.frame_ids) == 4 and list(first.frame_ids) == sorted(first.frame_ids)
    assert all(first.frames[i].shape == (16, 16, 3) for i in first.frame_ids)
    assert first.motion is None and w.windows_made == 4
    w.set_hot(True)  # alert_stride_s
    more = _feed(w, [_noise(rng) for _ in range(20)], t0_s=5.1)
    hops = np.diff([out[-1].end_s, *[x.end_s for x in more]])
    assert hops.tolist() == pytest.approx([1.0] + [0.5] * (len(hops) - 1))


def test_black_cell_gives_no_signal_instead_of_windows() -> None:
    w = CellWindower(0, "cam", BOX, FRAMES_ONLY, WindowsConfig(), no_signal_check_s=1.0)
    out = _feed(w, [np.zeros((*HW, 3), np.uint8)] * 40)
    assert out and all(isinstance(x, NoSignal) and x.signal == "black" for x in out)
    assert w.signal == "black" and w.windows_made == len(out)


def test_cut_restarts_the_motion_statistics() -> None:
    spec = MotionSpec(size_hw=(48, 64), pooled_hw=(12, 16))
    model = LiveModel(frames_per_window=4, size_hw=(16, 16), resize="squash", motion=spec)
    w = CellWindower(0, "cam", BOX, model, WindowsConfig(), no_signal_check_s=2.0)
    ramp = np.tile(np.linspace(30, 200, HW[1], dtype=np.uint8), (HW[0], 1))
    scene_a = [np.dstack([np.roll(ramp, i, axis=1)] * 3) for i in range(25)]  # slow pan
    scene_b = [255 - f for f in scene_a]  # a splice: every pixel changes at once
    out = _feed(w, scene_a)
    assert w.cuts == 0 and len(w.motion or ()) == 21  # window_s * motion fps + 1
    assert out and all(isinstance(x, WindowInfo) and x.motion is not None for x in out)
    _feed(w, scene_b[:3], t0_s=2.5)
    assert w.cuts == 1 and len(w.motion or ()) == 3  # restarted at the seam


def test_cut_guard_tells_a_cut_from_motion() -> None:
    guard = CutGuard(min_diff=12.0, ratio=4.0)
    gray = np.full((60, 80), 100, np.uint8)
    assert [guard.is_cut(gray + i) for i in range(5)] == [False] * 5  # small steady change: motion
    assert guard.is_cut(np.full((60, 80), 240, np.uint8))  # one pair far above the recent median


def test_layout_names_cells_and_refuses_what_does_not_fit() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    assert [cid for cid, _ in layout_cells(GridSpec(1, 1), [frame], "cam")] == ["cam"]
    assert [cid for cid, _ in layout_cells(GridSpec(2, 2), [frame], "wall")] == [
        "wall-r0c0", "wall-r0c1", "wall-r1c0", "wall-r1c1",
    ]  # fmt: skip
    assert [cid for cid, _ in layout_cells(GridSpec(1, 2), [frame], "w", ["a", "b"])] == ["a", "b"]
    with pytest.raises(InvalidInputError, match="cell ids"):
        layout_cells(GridSpec(1, 2), [frame], "w", ["a"])
    with pytest.raises(InvalidInputError, match="outside"):
        layout_cells([CellBox(0, 0, 0, 0, 300, 100)], [frame], "w")
    with pytest.raises(InvalidInputError, match="grid"):
        layout_cells("2x2", [frame], "w")
