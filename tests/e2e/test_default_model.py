"""The shipped default model (2026.12.07-1: I3D windows with the motion view + flow statistics) end to end:
its manifest records the window recipe the live path cuts, and `nexara predict` scores a real clip with it,
one window per 2 s (the other e2e tests run the CPU-light motion model, see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nexara.backbones import get_clip_spec
from nexara.model_manifest import feature_config, read_manifest
from nexara.voting import SHIPPED_MODEL_DIR

REPO = Path(__file__).resolve().parents[2]


def test_shipped_default_is_the_clip_model_with_its_window_recipe() -> None:
    man = read_manifest(SHIPPED_MODEL_DIR)  # checks every member file's SHA-256
    assert man.backbone == "i3d_kinetics400" and man.clip is not None
    assert [m.name for m in man.members] == ["i3d_lr", "i3d_attn", "i3d_rf", "flow_trees"]
    fc = feature_config(man)
    assert fc.clip == get_clip_spec("i3d_kinetics400")  # the registered profile: 32 frames / 2 s + motion view
    assert fc.clip.motion_crop == 0.5 and fc.clip_aggregation == "max" and man.window_hop_s == 1.0
    assert man.training_data["datasets"] == {"surveillance-fight": 230, "vioperu": 246}


@pytest.mark.timeout(600)
def test_predict_with_the_shipped_default_on_a_real_fight(shared_clips: Path) -> None:
    clip = shared_clips / "fight" / "fi063.mp4"  # 4.7 s: three 2-s windows at a 1-s hop
    env = {**os.environ, "NEXARA_MODEL_DIR": str(SHIPPED_MODEL_DIR)}
    r = subprocess.run(
        [sys.executable, "-m", "nexara.cli", "predict", str(clip), "--format", "jsonl"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (rec,) = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert rec["model_version"] == "2026.12.07-1"
    assert set(rec["members"]) == {"i3d_lr", "i3d_attn", "i3d_rf", "flow_trees"}
    assert rec["frames_used"] == 3 * 32
    assert 0.0 <= rec["violence_probability"] <= 1.0 and rec["confidence"] in {"HIGH", "MEDIUM", "LOW"}
