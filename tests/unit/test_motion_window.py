"""actors.motion_window: per-pair flow computed once, windows bit-identical to motion_from_gray.

Frames are real decoded frames: a synthetic H.264 video written with PyAV (tests/media_factory.py)
and a real CCTV clip from ../shared/data/surveillance-fight (the ``shared_clips`` fixture).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from actors.motion_window import MotionBuffer, to_gray
from nexara.media import iter_frames, resize_frame
from nexara.motion import MOTION_DIM, MotionSpec, motion_from_flows, motion_from_gray, pair_flow, pool_gray
from nexara.motion import clips as motion_clips

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from media_factory import write_h264_video  # noqa: E402

pytestmark = pytest.mark.unit

SMALL = MotionSpec(size_hw=(120, 160), pooled_hw=(60, 80))  # 4x cheaper flow for the synthetic video


def _decoded_gray(source: Path, spec: MotionSpec, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gray frames and times exactly as clip_motion makes them."""
    grays, times = [], []
    with iter_frames(source, fps=spec.fps, size_hw=spec.size_hw, resize="squash") as frames:
        for frame in frames:
            grays.append(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY))
            times.append(frame.time_s)
            if limit is not None and len(grays) == limit:
                break
    return np.stack(grays), np.asarray(times)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    path = write_h264_video(tmp_path_factory.mktemp("mw") / "moving.mp4", n_frames=75, fps=30.0, size_hw=(96, 128))
    return _decoded_gray(path, SMALL)


def _check_windows(buf: MotionBuffer, grays: np.ndarray, times: np.ndarray, window: int, stride: int) -> int:
    checked = 0
    for i in range(len(grays)):
        buf.push(grays[i], float(times[i]))
        assert len(buf) == min(i + 1, buf.max_frames)
        if i + 1 >= window and (i + 1 - window) % stride == 0:
            lo = i + 1 - window
            expected = motion_from_gray(grays[lo : i + 1], times[lo : i + 1], buf.spec)
            np.testing.assert_array_equal(buf.features(window), expected)
            checked += 1
    return checked


def test_windows_equal_motion_from_gray_on_a_decoded_video(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    grays, times = synthetic
    assert len(grays) == 25
    buf = MotionBuffer(SMALL, max_frames=12)
    assert _check_windows(buf, grays, times, window=8, stride=3) == 6
    # the whole buffer, and a shorter window
    np.testing.assert_array_equal(buf.features(), motion_from_gray(grays[-12:], times[-12:], SMALL))
    np.testing.assert_array_equal(buf.features(2), motion_from_gray(grays[-2:], times[-2:], SMALL))
    assert np.any(buf.features() != 0)


def test_windows_equal_motion_from_gray_across_chunks(
    synthetic: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # windows longer than motion_from_gray's chunk of pairs: both process the same chunks
    monkeypatch.setattr(motion_clips, "_CHUNK", 4)
    grays, times = synthetic
    buf = MotionBuffer(SMALL, max_frames=11)
    assert _check_windows(buf, grays[:17], times[:17], window=11, stride=3) == 3


def test_windows_equal_motion_from_gray_on_a_real_clip(shared_clips: Path) -> None:
    spec = MotionSpec()  # the shipped model's spec
    assert spec.hash() == "346141a5cf06eeec"
    grays, times = _decoded_gray(shared_clips / "fight" / "fi001.mp4", spec, limit=14)
    buf = MotionBuffer(spec, max_frames=10)
    assert _check_windows(buf, grays, times, window=8, stride=3) == 3


def test_public_pieces_rebuild_motion_from_gray(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    grays, times = synthetic
    grays, times = grays[:6], times[:6]
    dt = np.diff(times)
    pairs = [pair_flow(grays[k], grays[k + 1], float(dt[k]), SMALL) for k in range(5)]
    scaled, raw = [p[0] for p in pairs], [p[1] for p in pairs]
    assert scaled[0].shape == (60, 80, 2) and scaled[0].dtype == np.float32
    pooled = [pool_gray(g, SMALL) for g in grays]
    np.testing.assert_array_equal(
        motion_from_flows(scaled, raw, pooled, dt, SMALL), motion_from_gray(grays, times, SMALL)
    )
    with pytest.raises(ValueError, match="N-1 flows"):
        motion_from_flows(scaled, raw, pooled[:-1], dt, SMALL)
    with pytest.raises(ValueError, match=r"\(120, 160\)"):
        pair_flow(grays[0][:100], grays[1], 0.1, SMALL)


def test_max_frames_bound_and_reset(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    grays, times = synthetic
    buf = MotionBuffer(SMALL, max_frames=5)
    for g, t in zip(grays[:8], times[:8], strict=True):
        buf.push(g, float(t))
    assert len(buf) == 5
    np.testing.assert_array_equal(buf.times, times[3:8])
    with pytest.raises(ValueError, match="only 5 frame"):
        buf.features(6)

    buf.reset()
    assert len(buf) == 0
    np.testing.assert_array_equal(buf.features(), np.zeros(MOTION_DIM, dtype=np.float32))
    # after a reset the first pair does not reach back across the gap (and time may restart)
    for g, t in zip(grays[10:14], times[:4], strict=True):
        buf.push(g, float(t))
    np.testing.assert_array_equal(buf.features(), motion_from_gray(grays[10:14], times[:4], SMALL))
    np.testing.assert_array_equal(buf.features(1), np.zeros(MOTION_DIM, dtype=np.float32))


def test_bad_input_raises_value_errors(synthetic: tuple[np.ndarray, np.ndarray]) -> None:
    grays, _ = synthetic
    buf = MotionBuffer(SMALL, max_frames=4)
    with pytest.raises(ValueError, match=r"\(120, 160\) uint8 gray frame"):
        buf.push(np.zeros((240, 320), dtype=np.uint8), 0.0)
    with pytest.raises(ValueError, match=r"\(120, 160\) uint8 gray frame"):
        buf.push(grays[0].astype(np.float32), 0.0)
    with pytest.raises(ValueError, match=r"\(120, 160\) uint8 gray frame"):
        buf.push(np.zeros((120, 160, 3), dtype=np.uint8), 0.0)
    buf.push(grays[0], 1.0)
    with pytest.raises(ValueError, match="before the previous frame"):
        buf.push(grays[1], 0.5)
    with pytest.raises(ValueError, match="finite"):
        buf.push(grays[1], float("nan"))
    with pytest.raises(ValueError, match="n_frames"):
        buf.features(0)
    with pytest.raises(ValueError, match="max_frames"):
        MotionBuffer(SMALL, max_frames=1)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        to_gray(grays[0], SMALL)


def test_to_gray_squashes_like_clip_motion() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(180, 200, 3), dtype=np.uint8)
    expected = cv2.cvtColor(resize_frame(rgb, SMALL.size_hw, "squash"), cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(to_gray(rgb, SMALL), expected)
    at_size = rgb[:120, :160]  # a crop already at spec.size_hw: only the gray conversion
    np.testing.assert_array_equal(
        to_gray(at_size, SMALL), cv2.cvtColor(np.ascontiguousarray(at_size), cv2.COLOR_RGB2GRAY)
    )
    assert to_gray(rgb[10:90, 20:150], SMALL).shape == (120, 160)  # any (strided) crop
