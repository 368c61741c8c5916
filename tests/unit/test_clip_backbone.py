"""Clip backbones beside frame backbones: the clip spec and its hash, the registry kinds, the ClipBackbone
module on uint8 windows, the configured profile, window sampling, and `nexara backbones`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nexara.backbones import (
    ClipBackbone,
    ClipSpec,
    backbone_kind,
    create_backbone,
    create_clip_backbone,
    effective_clip_spec,
    get_clip_spec,
    get_feature_dim,
    get_spec,
    list_backbones,
)
from nexara.backbones.clip import motion_box, motion_view, windows_to_input
from nexara.backbones.factory import BackboneEntry, ClipBackboneEntry, register_backbone
from nexara.backbones.i3d import CONVERTED_NAME, I3D_KINETICS400, I3D_SPEC, cache_dir, clip_to_input
from nexara.config import parse_config
from nexara.errors import InvalidFramesError, InvalidSpecError, ModelError, WeightsNotFoundError
from nexara.media import sample_windows, window_indices

pytestmark = pytest.mark.unit

SMALL = replace(I3D_SPEC, num_frames=8, short_side_px=128, crop_px=112)


CENTRE_ONLY = replace(I3D_SPEC, motion_crop=0.0, decode_short_side_px=None)


def test_clip_spec_hash_covers_frames_window_and_crop() -> None:
    # pinned: a change to the canonical JSON would orphan every clip manifest and window store; the
    # centre-crop recipe keeps the hash it had before the motion view existed
    assert CENTRE_ONLY.hash() == "cb6ee56e0bc630a8"
    assert CENTRE_ONLY.describe() == "T=32 evenly over 2 s (16 fps), short side 256, centre crop 224, [-1, 1]"
    assert I3D_SPEC.hash() == "dea09d5842691edc"
    assert I3D_SPEC.describe() == (
        "T=32 evenly over 2 s (16 fps), short side 256, centre crop 224 + motion crop 0.5 x short side 360 "
        "(views averaged), [-1, 1]"
    )
    variants = [
        replace(I3D_SPEC, num_frames=16),
        replace(I3D_SPEC, window_s=4.0),  # the same T at another fps
        replace(I3D_SPEC, crop_px=200),
        replace(I3D_SPEC, short_side_px=224),  # another crop policy: the whole short side
        replace(I3D_SPEC, value_range=(0.0, 1.0)),
        replace(I3D_SPEC, motion_crop=0.4),
        replace(I3D_SPEC, decode_short_side_px=448),
        CENTRE_ONLY,
    ]
    hashes = {v.hash() for v in variants} | {I3D_SPEC.hash()}
    assert len(hashes) == len(variants) + 1
    same = ClipSpec(num_frames=32.0, window_s=2, short_side_px=256, crop_px=224, value_range=[-1, 1])  # type: ignore[arg-type]
    assert same == CENTRE_ONLY and same.hash() == CENTRE_ONLY.hash()
    assert ClipSpec.from_dict(I3D_SPEC.to_dict()) == I3D_SPEC
    assert ClipSpec.from_dict(CENTRE_ONLY.to_dict()) == CENTRE_ONLY and "motion_crop" not in CENTRE_ONLY.to_dict()
    assert CENTRE_ONLY.fps == 16.0 and CENTRE_ONLY.decode_size_hw == (256, 256)
    # the motion view needs the whole picture: 16:9 at the decode short side
    assert I3D_SPEC.decode_size_hw == (360, 640) and I3D_SPEC.decode_short_px == 360
    # the per-frame part maps 0..255 onto [-1, 1]; a clip hash never equals a frame hash
    frame = I3D_SPEC.frame_spec()
    assert frame.size_hw == (224, 224) and frame.mean == (127.5,) * 3 and frame.std == (127.5,) * 3
    assert frame.hash() != I3D_SPEC.hash()


@pytest.mark.parametrize(
    "bad",
    [
        {"num_frames": 0},
        {"window_s": 0.0},
        {"crop_px": 300},
        {"value_range": (1.0, -1.0)},
        {"crop": "squash"},
        {"sampling": "fps"},
        {"motion_crop": 1.5},
        {"decode_short_side_px": 100},  # below the short side
        {"motion_crop": 0.0},  # a decode size without a motion view
    ],
)
def test_clip_spec_refuses_bad_fields(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidSpecError, match="clip spec"):
        replace(I3D_SPEC, **bad)  # type: ignore[arg-type]


def test_clip_spec_from_dict_refuses_unknown_or_missing_keys() -> None:
    with pytest.raises(InvalidSpecError, match=r"unknown keys \['fps'\]"):
        ClipSpec.from_dict({**I3D_SPEC.to_dict(), "fps": 16})
    data = I3D_SPEC.to_dict()
    del data["window_s"]
    with pytest.raises(InvalidSpecError, match=r"missing keys \['window_s'\]"):
        ClipSpec.from_dict(data)


def test_registry_kinds() -> None:
    assert backbone_kind(I3D_KINETICS400) == "clip" and backbone_kind("efficientnet_lite0") == "frame"
    assert list_backbones("clip") == [I3D_KINETICS400]
    assert I3D_KINETICS400 not in list_backbones()  # the default lists what create_backbone builds
    assert I3D_KINETICS400 in list_backbones(None)
    assert get_clip_spec(I3D_KINETICS400) == I3D_SPEC and get_feature_dim(I3D_KINETICS400) == 1024
    with pytest.raises(ModelError, match="is a clip backbone"):
        get_spec(I3D_KINETICS400)
    with pytest.raises(ModelError, match="create_clip_backbone"):
        create_backbone(I3D_KINETICS400, pretrained=False)
    with pytest.raises(ModelError, match="not a clip backbone"):
        get_clip_spec("efficientnet_lite0")
    entry = ClipBackboneEntry("x_clip", 8, I3D_SPEC, lambda *a: (torch.nn.Identity(), None))
    with pytest.raises(ValueError, match="kind='clip'"):
        register_backbone(entry)
    frame_entry = BackboneEntry(
        "x_frame", 8, get_spec("efficientnet_lite0"), lambda *a: (torch.nn.Identity(), None, None)
    )
    with pytest.raises(ValueError, match="kind='clip'"):
        register_backbone(frame_entry, kind="clip")
    assert "x_clip" not in list_backbones(None) and "x_frame" not in list_backbones(None)


@pytest.fixture(scope="module")
def small_random() -> ClipBackbone:
    return create_clip_backbone(I3D_KINETICS400, spec=SMALL, pretrained=False)


def test_clip_backbone_takes_uint8_windows(small_random: ClipBackbone) -> None:
    windows = np.random.default_rng(0).integers(0, 256, (2, 8, 120, 160, 3), dtype=np.uint8)
    out = small_random(windows)
    assert out.pooled.shape == (2, 1024) and out.per_time.shape == (2, 1, 1024)
    assert out.pooled.dtype == torch.float32 and torch.isfinite(out.pooled).all()
    assert small_random(windows[:0]).pooled.shape == (0, 1024)
    assert small_random.classify(windows).shape == (2, 400)
    with pytest.raises(InvalidFramesError, match="takes windows of 8 frames, got 16"):
        small_random(np.zeros((1, 16, 64, 64, 3), np.uint8))
    with pytest.raises(InvalidFramesError, match="uint8"):
        small_random(np.zeros((1, 8, 64, 64, 3), np.float32))
    with pytest.raises(InvalidFramesError, match=r"\(N, T, H, W, 3\)"):
        small_random(np.zeros((8, 64, 64, 3), np.uint8))


def test_window_preprocessing_is_the_reference_recipe() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (4, 90, 120, 3), dtype=np.uint8)
    batched = windows_to_input(torch.from_numpy(np.stack([frames, frames[::-1]])), 128, 112)
    assert torch.equal(batched[:1], clip_to_input(frames, 128, 112))
    assert batched.shape == (2, 3, 4, 112, 112) and batched.min() >= -1 and batched.max() <= 1
    # frames a decoder already brought to the short side are only cropped
    square = frames[:, :, :90]
    x = windows_to_input(torch.from_numpy(square[None]), 90, 64)
    crop = torch.from_numpy(square[:, 13:77, 13:77].astype(np.float32)) / 127.5 - 1
    assert torch.equal(x[0], crop.permute(3, 0, 1, 2))


def test_model_weights_override_reaches_build_i3d(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"model\.weights"):
        create_clip_backbone(I3D_KINETICS400, weights=tmp_path / "nope.pt")
    converted = cache_dir() / CONVERTED_NAME
    bb = create_clip_backbone(I3D_KINETICS400, spec=SMALL, weights=converted)
    assert bb.weights_source == str(converted)
    state = torch.load(converted, map_location="cpu", weights_only=True)
    assert torch.equal(bb.net.state_dict()["Conv3d_1a_7x7.conv.weight"], state["Conv3d_1a_7x7.conv.weight"])


def test_effective_clip_spec_follows_the_live_window_and_the_profile_keys() -> None:
    cfg = parse_config("model:\n  backbone: i3d_kinetics400\n")
    assert effective_clip_spec(cfg) == I3D_SPEC
    cfg = parse_config(
        "model:\n  backbone: i3d_kinetics400\n  frames_per_window: 8\n  crop_px: 112\nwindows:\n  window_s: 3.0\n"
    )
    spec = effective_clip_spec(cfg)
    assert (spec.num_frames, spec.window_s, spec.short_side_px, spec.crop_px) == (8, 3.0, 128, 112)
    assert parse_config("features:\n  window_hop_s: 0.5\n").features.window_hop_s == 0.5


def test_window_indices() -> None:
    idx, bounds = window_indices(160, 25.0, window_s=2.0, hop_s=1.0, num_frames=4)
    assert bounds.tolist() == [[s, s + 50] for s in (0, 25, 50, 75, 100)]
    assert idx[0].tolist() == [0, 16, 33, 49] and idx[1].tolist() == [25, 41, 58, 74]
    # shorter than a window, or of unknown frame rate: one window over the whole clip
    for count, fps in ((40, 25.0), (40, 0.0)):
        idx, bounds = window_indices(count, fps, window_s=2.0, hop_s=1.0, num_frames=4)
        assert bounds.tolist() == [[0, 40]] and idx.tolist() == [[0, 13, 26, 39]]
    with pytest.raises(ValueError, match="hop_s"):
        window_indices(10, 25.0, window_s=2.0, hop_s=0.0, num_frames=4)


def test_sample_windows_on_a_real_clip(shared_clips: Path) -> None:
    w = sample_windows(
        shared_clips / "fight" / "fi063.mp4",
        window_s=2.0,
        hop_s=1.0,
        num_frames=8,
        size_hw=(64, 64),
        resize="center_crop",
    )
    assert w.frames.shape == (3, 8, 64, 64, 3) and w.frames.dtype == np.uint8
    assert w.start_s.tolist() == pytest.approx([0.0, 1.0, 2.0], abs=0.05)
    assert (w.end_s - w.start_s).tolist() == pytest.approx([2.0] * 3, abs=0.05)
    assert (np.diff(w.indices, axis=1) > 0).all() and (w.times_s[:, 0] >= w.start_s - 0.05).all()


def test_nexara_backbones_lists_clip_backbones_with_kind_and_hash(capsys: pytest.CaptureFixture[str]) -> None:
    from nexara.cli.probe import cmd_backbones

    assert cmd_backbones(argparse.Namespace()) == 0
    lines = capsys.readouterr().out.splitlines()
    clip = [line for line in lines if line.startswith(I3D_KINETICS400)]
    assert len(clip) == 1 and " clip " in clip[0] and I3D_SPEC.hash() in clip[0] and "T=32" in clip[0]
    assert any(line.startswith("efficientnet_lite0") and " frame " in line for line in lines)


def test_clip_keys_with_a_frame_backbone_are_refused(tmp_path: Path) -> None:
    from nexara.errors import ConfigError
    from training.features import extract_features

    cfg = parse_config("model:\n  frames_per_window: 8\n")
    with pytest.raises(ConfigError, match="efficientnet_lite0 is a frame backbone"):
        extract_features(tmp_path / "manifest.parquet", tmp_path / "out", cfg)


def test_motion_box_finds_where_the_frames_change() -> None:
    rng = np.random.default_rng(1)
    frames = np.full((8, 120, 200, 3), 90, np.uint8)
    for i in range(8):  # a bright square moving about in the lower right, the rest still
        frames[i, 70 + i : 100 + i, 150 - 2 * i : 180 - 2 * i] = rng.integers(150, 256, dtype=np.uint8)
    top, left, side = motion_box(torch.from_numpy(frames), 0.5)
    assert side == 60
    assert top <= 70 and top + side >= 107 and left <= 136 and left + side >= 180
    # a still window has no preferred place: a box of the right size inside the frame
    t2, l2, s2 = motion_box(torch.from_numpy(np.repeat(frames[:1], 8, 0)), 0.5)
    assert s2 == 60 and 0 <= t2 <= 60 and 0 <= l2 <= 140
    view = motion_view(torch.from_numpy(frames[None]), 0.5)
    assert view.shape == (1, 8, 60, 60, 3) and view.dtype == torch.uint8


def test_motion_view_features_are_the_mean_of_both_views() -> None:
    two_views = create_clip_backbone(I3D_KINETICS400, spec=SMALL, pretrained=False)
    centre_spec = replace(SMALL, motion_crop=0.0, decode_short_side_px=None)
    assert SMALL.motion_crop == 0.5 and two_views.views == 2
    centre = create_clip_backbone(I3D_KINETICS400, spec=centre_spec, pretrained=False)
    centre.net.load_state_dict(two_views.net.state_dict())
    windows = np.random.default_rng(2).integers(0, 256, (2, 8, 120, 160, 3), dtype=np.uint8)
    both = two_views(windows)
    crops = motion_view(torch.from_numpy(windows), 0.5).numpy()
    zoomed = create_clip_backbone(I3D_KINETICS400, spec=replace(centre_spec, short_side_px=112), pretrained=False)
    zoomed.net.load_state_dict(two_views.net.state_dict())
    expected = (centre(windows).pooled + zoomed(crops).pooled) / 2
    assert torch.allclose(both.pooled, expected, atol=1e-5)
    assert both.per_time.shape == (2, 1, 1024)
