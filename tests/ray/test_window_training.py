"""`nexara evaluate --lodo` and `nexara train` end to end on a clip backbone's window store (synthetic
features written through the store's functions, no I3D weights): grouped CV on Ray tasks over windows,
reports per window and per clip, Ray Train final fits, a manifest that records the windows and loads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from nexara.cli.app import main
from nexara.config import parse_config
from nexara.model_manifest import read_manifest
from nexara.voting import EnsembleModel
from training.pipeline import load_dataset_labels, load_training_data

pytestmark = pytest.mark.usefixtures("ray_local")

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from window_factory import window_config_yaml, write_window_store  # noqa: E402

MEMBERS = """\
    - {name: i3d_lr, head: probe, input: appearance, head_kwargs: {hidden: 0}}
    - {name: flow_trees, head: forest, input: motion, head_kwargs: {n_trees: 30}}"""


@pytest.mark.timeout(600)  # two Ray Train runs in parallel: ~1 min start-up each; minutes more under load
def test_evaluate_and_train_on_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = window_config_yaml(tmp_path / "ray_results", MEMBERS)
    config = tmp_path / "v2.yaml"
    config.write_text(text)
    features = write_window_store(tmp_path, parse_config(text), {"city": 4, "peru": 3})

    assert (
        main(["--config", str(config), "evaluate", str(features), "--cv", "2", "--lodo", "--out", str(tmp_path / "ev")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "per dataset (windows)" in printed and "clips (max of the window probabilities)" in printed
    doc = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert doc["rows"] == "windows" and doc["leave_one_dataset_out"]["held_out"] == ["city", "peru"]
    assert doc["clip_level"]["max"]["summary"]["ensemble"]["n"] == 42
    assert doc["clip_level"]["max"]["summary"]["ensemble"]["metrics"]["roc_auc"]["mean"] > 0.8
    assert set(doc["clip_level"]["mean"]["leave_one_dataset_out"]) == {"city", "peru"}

    model_dir = tmp_path / "model"
    assert (
        main(
            [
                "--config",
                str(config),
                "train",
                str(features),
                "--cv",
                "2",
                "--out",
                str(model_dir),
                "--version",
                "v2-test",
            ]
        )
        == 0
    )
    man = read_manifest(model_dir)
    assert man.version == "v2-test" and [m.name for m in man.members] == ["i3d_lr", "flow_trees"]
    assert man.backbone == "i3d_kinetics400" and man.clip is not None
    assert man.window_hop_s == 1.0 and man.clip_aggregation == "max"
    data = man.training_data
    assert data["clips"] == 42 and data["windows"]["total"] == 84 and data["hard_negatives"] == 7
    assert data["datasets"] == {"city": 24, "peru": 18}
    assert man.cv_metrics["oof_ensemble_clips_max"]["n"] == 42
    report = (model_dir / "cv" / "report.md").read_text()
    assert "## Clips: max of the window probabilities" in report

    cfg = parse_config(text)
    inputs, y, _, meta = load_training_data(features, cfg)
    out = EnsembleModel(model_dir).predict(inputs["appearance"], inputs["motion"])
    assert out.probability.shape == (84,)
    assert np.mean(out.violent == (y == 1)) > 0.8  # scored on the windows it was fitted on
    labels = load_dataset_labels(features, meta, None)
    assert labels.clips is not None and len(set(labels.clips)) == 42
