"""nexara.motion: optical-flow + frame-difference clip features.

Synthetic videos are written with PyAV into tmp dirs (tests/media_factory.py); real CCTV clips are
read from ../shared/data/surveillance-fight (skipped when absent). The values on the clips the research
parity was measured on are pinned by tests/unit/test_motion_reference.py.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from nexara.errors import NotAVideoError
from nexara.motion import (
    MOTION_DIM,
    MOTION_VERSION,
    FarnebackParams,
    MotionSpec,
    clip_motion,
    motion_feature_names,
    motion_from_gray,
)
from nexara.motion import clips as motion_clips

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from media_factory import write_text_file, write_video  # noqa: E402

pytestmark = pytest.mark.unit

SHARED = Path(os.environ.get("NEXARA_SHARED", Path(__file__).resolve().parents[2].parent / "shared")).resolve()
CLIPS = SHARED / "data" / "surveillance-fight"
V1_DIM = 231
# 25 fps 480x360 with audio, 29.97 fps 1080p, 29.97 fps 640x360
REAL_CLIPS = ["fight/fi001.mp4", "fight/fi077.mp4", "noFight/nofi001.mp4"]

NAMES = motion_feature_names()
SIZE_HW = (240, 320)
FPS = 30.0
SQUARE = 64


def _feat(vec: np.ndarray, name: str) -> float:
    return float(vec[NAMES.index(name)])


def _clip(name: str) -> Path:
    path = CLIPS / name
    if not path.is_file():
        pytest.skip(f"shared CCTV clips not found at {CLIPS} (set NEXARA_SHARED to the shared folder)")
    return path


@functools.cache
def _real_motion(name: str) -> np.ndarray:
    return clip_motion(CLIPS / name)


def _scene(n_frames: int, px_per_frame: float) -> list[np.ndarray]:
    """A textured square sliding right over a static textured background (RGB, SIZE_HW)."""
    rng = np.random.default_rng(7)
    h, w = SIZE_HW
    # smooth-ish static background: low-resolution noise upscaled, so Farneback sees texture
    background = np.kron(rng.integers(60, 140, size=(h // 8, w // 8)), np.ones((8, 8), dtype=np.int64))
    patch = np.kron(rng.integers(150, 256, size=(SQUARE // 4, SQUARE // 4)), np.ones((4, 4), dtype=np.int64))
    frames = []
    for i in range(n_frames):
        gray = background.copy()
        x = 20 + round(i * px_per_frame)
        gray[88 : 88 + SQUARE, x : x + SQUARE] = patch
        frames.append(np.repeat(gray[..., None], 3, axis=2).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("motion")
    n = 60  # 2 s at 30 fps -> 20 samples at 10 fps
    return {
        "fast": write_video(root / "fast.mkv", _scene(n, 4.0), fps=FPS),
        "slow": write_video(root / "slow.mkv", _scene(n, 1 / 3), fps=FPS),
        "static": write_video(root / "static.mkv", _scene(n, 0.0), fps=FPS),
        "single": write_video(root / "single.mkv", _scene(1, 0.0), fps=FPS),
    }


@pytest.fixture(scope="module")
def synthetic(videos: dict[str, Path]) -> dict[str, np.ndarray]:
    return {k: clip_motion(p) for k, p in videos.items() if k != "single"}


# --- names and spec -----------------------------------------------------------------------------


def test_feature_names_are_stable_and_unique() -> None:
    assert MOTION_VERSION == "flow-v2"
    assert MOTION_DIM == 1215 == len(NAMES) == len(set(NAMES))
    prefixes = {"flow_": 182, "fd_": 49, "ex_": 20, "vif_": 400, "ovif_": 400, "loc_": 164}
    assert {p: sum(n.startswith(p) for n in NAMES) for p in prefixes} == prefixes
    # flow-v1 first, unchanged, then extras, ViF, local
    assert NAMES[:3] == ["flow_mean_mean", "flow_mean_std", "flow_mean_max"]
    assert NAMES[V1_DIM - 1] == "fd_dd_dmax"
    assert NAMES[V1_DIM : V1_DIM + 2] == ["ex_top_mag_mean", "ex_top_mag_std"]
    assert NAMES[V1_DIM + 20] == "vif_c0_b0" and NAMES[V1_DIM + 20 + 320] == "vif_top0_b0"
    assert NAMES[V1_DIM + 20 + 400] == "ovif_c0_b0"
    assert NAMES[V1_DIM + 820] == "loc_max_mag_mean_mean"
    assert NAMES[-1] == "loc_conc3"
    assert motion_feature_names() == NAMES


def test_spec_hash_is_stable_and_tracks_parameters() -> None:
    spec = MotionSpec()
    assert spec.hash() == MotionSpec().hash() == "346141a5cf06eeec"
    assert len(spec.hash()) == 16 and int(spec.hash(), 16) >= 0
    assert spec.to_dict()["version"] == MOTION_VERSION
    assert MotionSpec(fps=5.0).hash() != spec.hash()
    assert MotionSpec(compensate=False).hash() != spec.hash()
    assert MotionSpec(farneback=FarnebackParams(winsize=21)).hash() != spec.hash()
    with pytest.raises(AttributeError):
        spec.fps = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs", [{"fps": 0.0}, {"pooled_hw": (100, 160)}, {"pooled_hw": (120, 150)}, {"size_hw": (240, 330)}]
)
def test_spec_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MotionSpec(**kwargs)  # type: ignore[arg-type]


# --- synthetic videos ---------------------------------------------------------------------------


def test_fast_motion_has_larger_flow_than_slow_or_static(synthetic: dict[str, np.ndarray]) -> None:
    fast, slow, static = synthetic["fast"], synthetic["slow"], synthetic["static"]
    for name in ("flow_mean_mean", "flow_p99_mean", "flow_cellmax_mean", "flow_acc_mean_mean"):
        assert _feat(fast, name) > 8 * max(_feat(slow, name), 1e-3), name  # measured >= 12x
        assert _feat(slow, name) >= _feat(static, name) - 1e-6, name
    assert _feat(fast, "fd_m_mean") > 3 * _feat(slow, "fd_m_mean") > 0  # measured 6x
    assert _feat(static, "fd_m_mean") < 1e-3
    # the square covers ~5% of the frame: that fraction moves by more than 2 px per 0.1 s
    assert _feat(fast, "flow_fr2_mean") > 0.02
    assert _feat(slow, "flow_fr2_mean") < 0.005
    assert _feat(static, "flow_p99_max") < 0.05
    # units: 4 px/frame at 320 px and 30 fps = 12 px per 0.1 s = 6 pooled px per 0.1 s
    assert 4.0 < _feat(fast, "flow_p99_max") < 8.0
    # a single object moving one way: coherent flow, the direction mass in the top two bins (a
    # rightward motion lies on the edge between two of the 8 bins)
    assert _feat(fast, "flow_coh_mean") > 0.9
    assert _feat(fast, "flow_hd0_mean") + _feat(fast, "flow_hd1_mean") > 0.9


def test_fast_motion_separates_on_added_groups(synthetic: dict[str, np.ndarray]) -> None:
    fast, slow, static = synthetic["fast"], synthetic["slow"], synthetic["static"]
    # local: the square's cells move; mean magnitude of the busiest cell (measured 1.66 / 0.23 / 0.001)
    for name in ("loc_max_mag_mean_mean", "loc_top1_mag_p90_mean", "loc_max_acc_mean_mean", "ex_top_mag_mean"):
        assert _feat(fast, name) > 5 * max(_feat(slow, name), 1e-3), name
        assert _feat(slow, name) >= _feat(static, name) - 1e-6, name
    assert _feat(fast, "loc_max_fr2_mean") > 0.1 and _feat(static, "loc_max_fr2_mean") == 0
    # top 5% movers are the square: ~6 pooled px per 0.1 s
    assert 4.0 < _feat(fast, "ex_top_mag_mean") < 8.0
    # ViF: in a static scene every pixel "changes" as much as the (zero) mean at every step -> the
    # last bin; with a moving square most pixels change less than the mean -> the first bin
    for kind in ("vif", "ovif"):
        assert _feat(static, f"{kind}_top0_b19") == 1.0 and _feat(static, f"{kind}_top0_b0") == 0.0
        assert _feat(fast, f"{kind}_top0_b0") > 0.5 and _feat(fast, f"{kind}_top3_b19") < 0.05
    # each cell's ViF histogram sums to 1
    for vec in (fast, slow, static):
        start = NAMES.index("vif_c0_b0")
        cells = vec[start : start + 320].reshape(16, 20)
        np.testing.assert_allclose(cells.sum(axis=1), 1.0, atol=1e-5)


def test_synthetic_vectors_are_finite_float32(synthetic: dict[str, np.ndarray]) -> None:
    for vec in synthetic.values():
        assert vec.shape == (MOTION_DIM,) and vec.dtype == np.float32
        assert np.isfinite(vec).all()


def test_single_frame_video_gives_zero_vector(videos: dict[str, Path]) -> None:
    vec = clip_motion(videos["single"])
    assert vec.shape == (MOTION_DIM,) and vec.dtype == np.float32
    assert np.isfinite(vec).all() and not vec.any()


def test_max_seconds_limits_the_analysed_span(videos: dict[str, Path], synthetic: dict[str, np.ndarray]) -> None:
    short = clip_motion(videos["fast"], max_seconds=0.5)
    assert np.isfinite(short).all()
    assert not np.allclose(short, synthetic["fast"])  # fewer samples -> other std / percentiles
    with pytest.raises(ValueError):
        clip_motion(videos["fast"], max_seconds=0)


def test_non_video_raises_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(NotAVideoError):
        clip_motion(write_text_file(tmp_path / "notes.mp4"))


# --- motion_from_gray ---------------------------------------------------------------------------


def _gray_scene(n: int, px_per_frame: float) -> np.ndarray:
    return np.stack([f[..., 0] for f in _scene(n, px_per_frame)])


def test_motion_from_gray_edge_cases() -> None:
    frames = _gray_scene(3, 4.0)
    for n in (0, 1):
        vec = motion_from_gray(frames[:n], np.arange(n) / 10.0)
        assert vec.shape == (MOTION_DIM,) and vec.dtype == np.float32 and not vec.any()
    # two frames (one pair, no acceleration) and repeated timestamps stay finite
    assert np.isfinite(motion_from_gray(frames[:2], np.array([0.0, 0.1]))).all()
    assert np.isfinite(motion_from_gray(frames, np.zeros(3))).all()
    # one pair: no change between pairs -> ViF counts every pixel (the research convention)
    one = motion_from_gray(frames[:2], np.array([0.0, 0.1]))
    assert _feat(one, "vif_c0_b19") == _feat(one, "ovif_c5_b19") == 1.0
    assert _feat(one, "ex_top_acc_mean") == _feat(one, "loc_max_acc_mean_mean") == 0.0
    assert _feat(one, "ex_top_mag_mean") > 0 and _feat(one, "loc_max_mag_mean_mean") > 0
    with pytest.raises(ValueError):
        motion_from_gray(frames[:, :100], np.arange(3) / 10.0)  # wrong size
    with pytest.raises(ValueError):
        motion_from_gray(frames, np.arange(2) / 10.0)  # times do not match frames


def test_chunking_does_not_change_features(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _gray_scene(30, 2.0)
    times = np.arange(len(frames)) / 10.0
    whole = motion_from_gray(frames, times)
    monkeypatch.setattr(motion_clips, "_CHUNK", 4)
    np.testing.assert_allclose(motion_from_gray(frames, times), whole, rtol=1e-5, atol=1e-6)


# --- real clips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_CLIPS)
def test_real_clip_shape_dtype_finite(name: str) -> None:
    _clip(name)
    vec = _real_motion(name)
    assert vec.shape == (MOTION_DIM,) and vec.dtype == np.float32
    assert np.isfinite(vec).all()
    assert _feat(vec, "flow_mean_mean") > 0 and _feat(vec, "fd_m_mean") > 0
    assert _feat(vec, "ex_top_mag_mean") > 0 and _feat(vec, "loc_max_mag_mean_mean") > 0
