"""A model manifest on a clip backbone: it round-trips through write/read with its clip spec, and a runtime
(or a manifest edited by hand) with another recipe fails at load, naming both."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from nexara.backbones import get_spec
from nexara.backbones.i3d import I3D_KINETICS400, I3D_SPEC
from nexara.errors import ModelError
from nexara.model_manifest import (
    MANIFEST_FILE,
    ClipPreprocessingEntry,
    ModelManifest,
    PreprocessingEntry,
    feature_config,
    read_manifest,
    write_manifest,
)
from nexara.voting import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.unit


def _clip_manifest(folder: Path) -> ModelManifest:
    """The shipped model's members, re-labelled as a model on I3D windows (member files copied along)."""
    base = read_manifest(DEFAULT_MODEL_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for m in base.members:
        shutil.copy(DEFAULT_MODEL_DIR / m.weights_file, folder / m.weights_file)
    frame = I3D_SPEC.frame_spec()
    return base.model_copy(
        update={
            "version": "test-clip-1",
            "backbone": I3D_KINETICS400,
            "preprocessing": PreprocessingEntry(**frame.to_dict(), hash=frame.hash()),
            "frames_per_clip": I3D_SPEC.num_frames,
            "feature_dim": 1024,
            "clip": ClipPreprocessingEntry.from_spec(I3D_SPEC),
        }
    )


def test_clip_manifest_round_trips(tmp_path: Path) -> None:
    manifest = _clip_manifest(tmp_path)
    write_manifest(manifest, tmp_path)
    back = read_manifest(tmp_path)
    assert back == manifest
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["clip"]["hash"] == I3D_SPEC.hash()
    fc = feature_config(back)
    assert fc.clip == I3D_SPEC and fc.backbone == I3D_KINETICS400 and fc.frames_per_clip == 32
    fc.check_clip_spec(I3D_KINETICS400, I3D_SPEC)  # the same recipe loads


@pytest.mark.parametrize(
    "other", [{"num_frames": 16}, {"window_s": 3.0}, {"crop_px": 112, "short_side_px": 128}, {"short_side_px": 224}]
)
def test_another_recipe_is_refused_naming_both(tmp_path: Path, other: dict[str, object]) -> None:
    write_manifest(_clip_manifest(tmp_path), tmp_path)
    fc = feature_config(read_manifest(tmp_path))
    runtime = replace(I3D_SPEC, **other)  # type: ignore[arg-type]
    with pytest.raises(ModelError) as err:
        fc.check_clip_spec(I3D_KINETICS400, runtime)
    msg = str(err.value)
    assert I3D_SPEC.hash() in msg and runtime.hash() in msg and "T=32" in msg
    assert "test-clip-1" in msg


def test_frame_model_refuses_a_clip_backbone_and_the_reverse(tmp_path: Path) -> None:
    frame_fc = feature_config(read_manifest(DEFAULT_MODEL_DIR))
    assert frame_fc.clip is None
    with pytest.raises(ModelError, match="not windows of clip backbone i3d_kinetics400"):
        frame_fc.check_clip_spec(I3D_KINETICS400, I3D_SPEC)
    write_manifest(_clip_manifest(tmp_path), tmp_path)
    clip_fc = feature_config(read_manifest(tmp_path))
    with pytest.raises(ModelError, match="expects backbone i3d_kinetics400"):
        clip_fc.check_backbone("efficientnet_lite0", get_spec("efficientnet_lite0"))


def test_a_clip_spec_edited_by_hand_fails_at_load(tmp_path: Path) -> None:
    write_manifest(_clip_manifest(tmp_path), tmp_path)
    path = tmp_path / MANIFEST_FILE
    data = json.loads(path.read_text())
    data["clip"]["window_s"] = 4.0  # hash left as it was
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=f"records clip spec hash {I3D_SPEC.hash()}, but its fields hash to"):
        feature_config(read_manifest(tmp_path))
    data["clip"]["window_s"] = 2.0
    data["frames_per_clip"] = 16
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="frames_per_clip 16 differs from the clip spec's 32"):
        read_manifest(tmp_path)


def test_window_fields_round_trip_and_belong_to_clip_models(tmp_path: Path) -> None:
    manifest = _clip_manifest(tmp_path).model_copy(update={"window_hop_s": 0.5, "clip_aggregation": "mean"})
    write_manifest(manifest, tmp_path)
    back = read_manifest(tmp_path)
    assert back.window_hop_s == 0.5 and back.clip_aggregation == "mean"
    assert feature_config(back).clip_aggregation == "mean"
    assert feature_config(read_manifest(DEFAULT_MODEL_DIR)).clip_aggregation == "max"  # the default rule
    path = tmp_path / MANIFEST_FILE
    data = json.loads(path.read_text())
    data["clip_aggregation"] = "median"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="clip_aggregation"):
        read_manifest(tmp_path)
    frame = json.loads((DEFAULT_MODEL_DIR / MANIFEST_FILE).read_text())
    frame["window_hop_s"] = 1.0  # a frame model was not trained on windows
    (tmp_path / "frame").mkdir()
    for m in frame["members"]:
        shutil.copy(DEFAULT_MODEL_DIR / m["weights_file"], tmp_path / "frame" / m["weights_file"])
    (tmp_path / "frame" / MANIFEST_FILE).write_text(json.dumps(frame))
    with pytest.raises(ModelError, match="belong to a model on a clip backbone"):
        read_manifest(tmp_path / "frame")


def test_a_model_with_its_own_backbone_weights_builds_that_backbone(tmp_path: Path) -> None:
    """A model trained on features of a fine-tuned backbone (`model.weights`) carries that file: the runtime
    builds the backbone from it (unless told otherwise), and a changed file fails at load."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from model_factory import SMALL_CLIP, write_model

    from nexara.backbones.i3d import build_i3d
    from nexara.model_manifest import BackboneWeightsEntry, sha256_file
    from nexara.runtime import ModelRuntime

    folder = write_model(tmp_path / "m", clip=SMALL_CLIP, inputs=("appearance",))
    tuned = build_i3d(pretrained=False)  # random weights: features unlike the stock backbone's
    torch.save(tuned.state_dict(), folder / "backbone.pt")
    entry = BackboneWeightsEntry(file="backbone.pt", sha256=sha256_file(folder / "backbone.pt"))
    manifest = read_manifest(folder).model_copy(update={"backbone_weights": entry})
    write_manifest(manifest, folder)
    assert read_manifest(folder).backbone_weights == manifest.backbone_weights

    runtime = ModelRuntime.from_manifest(folder, device="cpu")
    assert runtime.weights == str(folder / "backbone.pt")
    windows = torch.randint(0, 255, (1, SMALL_CLIP.num_frames, 128, 128, 3), dtype=torch.uint8)
    from nexara.backbones import create_clip_backbone

    with torch.no_grad():
        own = runtime.clip_backbone(windows).pooled
        stock = create_clip_backbone(I3D_KINETICS400, spec=SMALL_CLIP)(windows).pooled
    assert runtime.clip_backbone.weights_source == str(folder / "backbone.pt")
    assert own.shape == stock.shape == (1, 1024) and not torch.allclose(own, stock)
    # an explicit model.weights still wins
    assert ModelRuntime.from_manifest(folder, device="cpu", weights="/elsewhere.pt").weights == "/elsewhere.pt"

    (folder / "backbone.pt").write_bytes(b"changed")
    with pytest.raises(ModelError, match=r"backbone weights backbone\.pt do not match their sha256"):
        read_manifest(folder)
