"""actors.windowing on its own: frames in, WindowInfo / NoSignal out at the right stream times (no threads,
no Ray, no model); a clip model's live windows against offline window sampling on real shared clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.grid import CellBox, GridSpec
from actors.records import NoSignal, WindowInfo
from actors.sources import SourceConfig, StreamReader
from actors.windowing import CLIP_READER_MAX_FPS, CellWindower, CutGuard, LiveModel, layout_cells
from nexara.backbones.spec import ClipSpec
from nexara.config import WindowsConfig
from nexara.errors import InvalidInputError, ModelError
from nexara.media import sample_windows
from nexara.motion import MotionSpec, window_motion

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


# --- a clip model's windows: cut live as training cuts them offline ------------------------------------


def _live_clip_windows(path: Path, model: LiveModel, windows: WindowsConfig) -> list[WindowInfo]:
    """The windows a stream actor cuts from ``path`` (read by the real StreamReader, as fast as it decodes)."""
    reader = StreamReader(SourceConfig(str(path), pacing="fast"), fps=model.reader_fps(windows.window_s))
    cell: CellWindower | None = None
    out = []
    for frame in reader.frames():
        if cell is None:
            h, w = frame.rgb.shape[:2]
            cell = CellWindower(0, "cam", CellBox(0, 0, 0, 0, w, h), model, windows, no_signal_check_s=2.0)
        got = cell.push(frame.rgb, frame.time_s)
        if got is not None:
            assert isinstance(got, WindowInfo)
            out.append(got)
    return out


@pytest.mark.parametrize(
    "clip, spec",
    [
        # 29.97 fps: a window spans round(59.94) = 60 frames, hop round(29.97) = 30
        ("fight/fi063.mp4", ClipSpec(num_frames=8, window_s=2.0, short_side_px=64, crop_px=56)),
        # 25 fps, and a motion-crop recipe (the whole 16:9 picture decoded, not the centre square)
        (
            "noFight/nofi002.mp4",
            ClipSpec(
                num_frames=16, window_s=2.0, short_side_px=64, crop_px=56, motion_crop=0.5, decode_short_side_px=96
            ),
        ),
    ],
)
def test_live_clip_windows_hold_the_frames_offline_sampling_picks(
    shared_clips: Path, clip: str, spec: ClipSpec
) -> None:
    path = shared_clips / clip
    model = LiveModel(spec.num_frames, spec.decode_size_hw, "center_crop", MotionSpec(), spec)
    windows = WindowsConfig()  # window_s 2 s, stride_s 1 s (the offline hop here)
    live = _live_clip_windows(path, model, windows)
    offline = sample_windows(
        path,
        window_s=spec.window_s,
        hop_s=windows.stride_s,
        num_frames=spec.num_frames,
        size_hw=spec.decode_size_hw,
        resize="center_crop",
    )
    assert len(live) == len(offline.frames) >= 2
    for k, window in enumerate(live):
        # the same source frames (ids are source frame indices), at the same stream times
        assert list(window.frame_ids) == offline.indices[k].tolist()
        np.testing.assert_allclose(window.frame_times_s, offline.times_s[k], atol=1e-6)
        assert window.end_s == pytest.approx(window.frame_times_s[-1])
        # pixels: RGB then resized here, resized from the decoded YUV frame offline (one swscale call):
        # measured mean 0.8-1.0 grey levels, max 7-20 at edges
        clip_frames = window.clip()
        assert clip_frames.shape == offline.frames[k].shape == (spec.num_frames, *spec.decode_size_hw, 3)
        diff = np.abs(clip_frames.astype(np.int16) - offline.frames[k].astype(np.int16))
        assert diff.mean() < 1.5 and diff.max() <= 32
    # the flow statistics of each window: the same motion frames as a training window's (window_motion),
    # gray frames differing by the same conversion (a near-static scene flips a few histogram bins:
    # correlation 0.95 there, 0.9999 on fi063)
    trained = window_motion(path, list(zip(offline.start_s, offline.end_s, strict=True)))
    for window, vector in zip(live, trained, strict=True):
        assert window.motion is not None
        assert np.corrcoef(window.motion, vector)[0, 1] > 0.9
        assert np.median(np.abs(window.motion - vector) / (np.abs(vector) + 1e-3)) < 0.05


def test_clip_model_refuses_another_window_length() -> None:
    spec = ClipSpec(num_frames=8, window_s=2.0, short_side_px=64, crop_px=56)
    model = LiveModel(8, spec.decode_size_hw, "center_crop", None, spec)
    assert model.reader_fps(2.0) == CLIP_READER_MAX_FPS  # every source frame: offline picks frames by index
    with pytest.raises(ModelError, match=r"trained on windows of 2 s.*windows.window_s is 3"):
        CellWindower(0, "cam", BOX, model, WindowsConfig(window_s=3.0), no_signal_check_s=2.0)


def test_clip_windows_follow_the_hot_stride_and_skip_no_frames() -> None:
    spec = ClipSpec(num_frames=4, window_s=2.0, short_side_px=16, crop_px=16)
    model = LiveModel(4, spec.decode_size_hw, "center_crop", None, spec)
    w = CellWindower(0, "cam", BOX, model, WindowsConfig(), no_signal_check_s=2.0)
    rng = np.random.default_rng(1)
    out = _feed(w, [_noise(rng) for _ in range(41)])  # 10 fps, 0.0 .. 4.0 s
    assert [round(x.end_s, 3) for x in out] == [1.9, 2.9, 3.9]  # 20 frames a window, first at frame 19
    first = out[0]
    assert isinstance(first, WindowInfo)
    assert first.frame_ids == (0, 6, 13, 19)  # sample_indices(20, 4)
    assert first.clip().shape == (4, 16, 16, 3)
    w.set_hot(True)
    more = _feed(w, [_noise(rng) for _ in range(20)], t0_s=4.1)
    assert [round(x.end_s, 3) for x in more] == [4.4, 4.9, 5.4, 5.9]


def test_live_model_of_a_clip_manifest_cuts_its_windows() -> None:
    from nexara.backbones.i3d import I3D_KINETICS400, I3D_SPEC
    from nexara.model_manifest import ClipPreprocessingEntry, read_manifest
    from nexara.voting import DEFAULT_MODEL_DIR

    base = read_manifest(DEFAULT_MODEL_DIR)
    frame_model = LiveModel.from_manifest(base)
    assert frame_model.clip is None and frame_model.reader_fps(2.0) == 10.0  # motion statistics at 10 fps
    clip_manifest = base.model_copy(
        update={
            "backbone": I3D_KINETICS400,
            "frames_per_clip": I3D_SPEC.num_frames,
            "feature_dim": 1024,
            "clip": ClipPreprocessingEntry.from_spec(I3D_SPEC),
        }
    )
    model = LiveModel.from_manifest(clip_manifest)
    assert model.clip == I3D_SPEC and model.frames_per_window == I3D_SPEC.num_frames
    assert model.size_hw == I3D_SPEC.decode_size_hw and model.resize == "center_crop"
    assert model.motion is not None and model.reader_fps(2.0) == CLIP_READER_MAX_FPS
