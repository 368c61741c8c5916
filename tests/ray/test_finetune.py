"""`nexara finetune` on CPU: a small I3D profile (8 frames, 56-px crop) fine-tuned on real shared clips under
Ray Train with two DDP ranks, windows read through Ray Data, the manifest's grouped folds, then one fit on
every clip. No GPU here: the GPU path (one GPU per rank, AMP) is the same code with `use_gpu: true`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from manifest_factory import clips_manifest

from nexara.backbones import create_clip_backbone
from nexara.backbones.i3d import build_i3d
from nexara.cli.app import main
from nexara.config import NexaraConfig, parse_config

pytestmark = pytest.mark.usefixtures("ray_local")

CLIPS = [
    ("fight/fi001.mp4", "src0"),
    ("fight/fi002.mp4", "src1"),
    ("noFight/nofi001.mp4", "src2"),
    ("noFight/nofi002.mp4", "src3"),
]

CONFIG = """\
model:
  backbone: i3d_kinetics400
  frames_per_window: 8
  crop_px: 56
  motion_crop: 0
features:
  window_hop_s: 2.0
  decode_num_cpus: 0.25
  model_num_cpus: 0.5
training:
  storage_path: {storage}
  finetune:
    train_blocks: [Mixed_5c]
    epochs: 1
    batch_size: 4
    num_workers: 2
    cpus_per_worker: 0.5
"""


@pytest.mark.timeout(900)  # three Ray Train runs of two ranks each: minutes on 2 busy cores
def test_finetune_grouped_cv_then_all_clips(
    shared_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = clips_manifest(shared_clips, CLIPS, tmp_path, folds=2)
    config = tmp_path / "ft.yaml"
    config.write_text(CONFIG.format(storage=tmp_path / "ray_results"))
    out = tmp_path / "ft"

    assert main(["--config", str(config), "finetune", str(manifest), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert "out of fold: clip AUC" in printed and "use it as model.weights" in printed
    report = json.loads((out / "finetune.json").read_text())
    assert [f["fold"] for f in report["folds"]] == ["fold0", "fold1"]
    assert all(f["ranks"] == 2 for f in report["folds"])  # DDP over two Ray Train workers
    assert sum(f["holdout_clips"] for f in report["folds"]) == 4
    (per,) = report["per_dataset"].values()
    assert per["clips"] == 4 and per["windows"] == sum(f["holdout_windows"] for f in report["folds"]) >= 4
    assert report["settings"]["spec"]["num_frames"] == 8 and report["settings"]["spec"]["crop_px"] == 56

    # the fine-tuned backbone is what model.weights takes: only the trained block moved
    tuned = build_i3d(out / "backbone.pt")
    stock = build_i3d()
    changed = {
        name.split(".")[1] if name.startswith("mixed.") else name.split(".")[0]
        for (name, a), b in zip(tuned.state_dict().items(), stock.state_dict().values(), strict=True)
        if not torch.equal(a, b)
    }
    assert changed == {"Mixed_5c"}
    head = torch.load(out / "head.pt", weights_only=True)
    assert head["1.weight"].shape == (1, 1024)

    cfg = parse_config(config.read_text())
    spec = create_clip_backbone("i3d_kinetics400").spec
    windows = torch.randint(0, 255, (1, spec.num_frames, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        a = create_clip_backbone("i3d_kinetics400", weights=out / "backbone.pt")(windows).pooled
        b = create_clip_backbone("i3d_kinetics400", weights=cfg.model.weights)(windows).pooled
    assert not torch.allclose(a, b)


def test_finetune_refuses_a_frame_backbone_and_unknown_blocks(tmp_path: Path) -> None:
    from nexara.errors import ConfigError, TrainingError
    from training.finetune import run_finetune, trainable_modules

    cfg = NexaraConfig()
    with pytest.raises(TrainingError, match="clip backbone"):
        run_finetune(tmp_path / "m.parquet", tmp_path / "out", cfg)
    with pytest.raises(TrainingError, match=r"no block named \['Mixed_9z'\].*Mixed_5c"):
        trainable_modules(build_i3d(pretrained=False), ["Mixed_9z"])
    with pytest.raises(ConfigError, match="'all' stands alone"):
        parse_config("training:\n  finetune:\n    train_blocks: [all, Mixed_5c]\n")
