"""A small model folder for tests: random probe heads over real feature sizes, on I3D windows (a small
clip spec) or Lite0 frames, plus motion. Plain helper module (no fixtures): ``from model_factory import
write_model`` (``tests/`` is on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

import torch

from nexara.backbones import ClipSpec, get_spec
from nexara.backbones.i3d import I3D_KINETICS400
from nexara.heads import create_head
from nexara.model_manifest import (
    ClipPreprocessingEntry,
    MemberEntry,
    ModelManifest,
    MotionEntry,
    PreprocessingEntry,
    sha256_file,
    write_manifest,
)
from nexara.motion import MOTION_DIM, MOTION_VERSION, MotionSpec

# a small I3D recipe (T=8 at 112 px) keeps a CPU test to seconds; the runtime takes any recipe the manifest records
SMALL_CLIP = ClipSpec(num_frames=8, window_s=2.0, short_side_px=128, crop_px=112)


def _member(folder: Path, name: str, input_: str, dim: int, seed: int) -> MemberEntry:
    torch.manual_seed(seed)
    head = create_head("probe", dim, hidden=0)
    with torch.no_grad():  # random standardisation statistics, so the probability varies with the input
        head.standardise.running_mean.normal_()
        head.standardise.running_var.uniform_(0.5, 2.0)
    path = folder / f"{name}.pt"
    torch.save(head.state_dict(), path)
    return MemberEntry(
        name=name, head_config=head.config, weights_file=path.name, sha256=sha256_file(path), input=input_
    )


def write_model(folder: Path, *, clip: ClipSpec | None, inputs: tuple[str, ...]) -> Path:
    """A model folder: one random probe per input (appearance on I3D windows or Lite0 frames, motion)."""
    folder.mkdir(parents=True, exist_ok=True)
    backbone, dim = (I3D_KINETICS400, 1024) if clip is not None else ("efficientnet_lite0", 1280)
    frame = clip.frame_spec() if clip is not None else get_spec(backbone)
    motion = MotionSpec()
    members = [
        _member(folder, f"m_{inp}", inp, dim if inp == "appearance" else MOTION_DIM, seed)
        for seed, inp in enumerate(inputs)
    ]
    manifest = ModelManifest(
        version="test-runtime-1",
        created_utc="2026-11-25T00:00:00+00:00",
        backbone=backbone,
        preprocessing=PreprocessingEntry(**frame.to_dict(), hash=frame.hash()),
        frames_per_clip=clip.num_frames if clip is not None else 16,
        feature_dim=dim,
        motion=MotionEntry(version=MOTION_VERSION, hash=motion.hash(), dim=MOTION_DIM),
        clip=None if clip is None else ClipPreprocessingEntry.from_spec(clip),
        members=members,
        weights=[1 / len(members)] * len(members),
        temperature=1.0,
        threshold=0.5,
    )
    write_manifest(manifest, folder)
    return folder
