"""Ensemble CV on Ray tasks, Ray Train final fits (parallel, resumable) and the exported manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nexara.backbones import get_spec
from nexara.config import parse_config
from nexara.model_manifest import read_manifest
from nexara.voting import EnsembleModel
from training.cv import cross_validate
from training.export import export_model
from training.final import train_final
from training.report import write_cv_report

pytestmark = pytest.mark.usefixtures("ray_local")


def _synthetic(n_sources: int = 12, per_source: int = 8, t: int = 8, d: int = 16, seed: int = 0):
    """Fights carry a temporal oscillation in a few feature dims; each source has its own offset."""
    rng = np.random.default_rng(seed)
    xs, ys, gs = [], [], []
    for s in range(n_sources):
        offset = rng.normal(0, 0.5, d)
        for i in range(per_source):
            y = i % 2
            x = rng.normal(0, 1, (t, d)) + offset
            if y:
                x[:, :4] += 3.5 * np.sin(np.arange(t) * 1.7)[:, None]
            xs.append(x)
            ys.append(y)
            gs.append(f"src{s}")
    return np.asarray(xs, np.float32), np.asarray(ys), np.asarray(gs, dtype=object)


def _cfg(tmp_path: Path, *, trees: bool = False, inner_folds: int = 4):
    trees_member = "    - {name: trees, head: forest, motion: true, head_kwargs: {n_trees: 40}}\n" if trees else ""
    return parse_config(
        f"""
training:
  members:
    - {{name: stats, head: stats, motion: true}}
    - {{name: conv, head: conv1d, motion: true}}
{trees_member}  train: {{epochs: 6, batch_size: 16, warmup_epochs: 1, early_stopping_patience: 3}}
  inner_folds: {inner_folds}
  member_num_cpus: 0.5
  storage_path: {tmp_path / "ray_results"}
"""
    )


@pytest.mark.timeout(600)  # three Ray Train runs: ~200 s on an idle 2-core machine, near 300 s under load
def test_cv_train_export_resume(tmp_path: Path) -> None:
    x, y, groups = _synthetic()
    cfg = _cfg(tmp_path, trees=True, inner_folds=2)  # nested CV; a gradient-free tree member beside two heads
    cv = cross_validate({"appearance": x}, y, groups, cfg, k=2, seed=0)
    assert cv.member_names == ["stats", "conv", "trees"]
    assert cv.best_epochs["trees"] == [1, 1]  # fitted in one call
    assert all(1 <= e <= 6 for e in cv.best_epochs["conv"])
    # grouped: no source on two sides of any fold
    for test_idx in cv.folds:
        inside = set(groups[test_idx])
        outside = set(groups[np.setdiff1d(np.arange(len(y)), test_idx)])
        assert not inside & outside
    assert sorted(np.concatenate(cv.folds).tolist()) == list(range(len(y)))
    for name in ("stats", "conv", "trees", "ensemble", "baseline"):
        assert cv.summary[name]["n_folds"] == 2
    assert cv.summary["trees"]["metrics"]["roc_auc"]["mean"] > 0.9
    assert cv.summary["ensemble"]["metrics"]["roc_auc"]["mean"] > 0.9
    report = write_cv_report(cv, y, tmp_path / "report", title="synthetic")
    text = report.read_text()
    assert "**ensemble**" in text and "baseline" in text
    for png in ("roc.png", "pr.png", "confusion.png", "reliability.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000

    trained = train_final({"appearance": x}, y, cfg, epochs={"stats": 8, "conv": 8}, run_name="t1")
    assert set(trained) == {"stats", "conv", "trees"}
    assert (tmp_path / "ray_results" / "t1-stats").is_dir()
    assert (tmp_path / "ray_results" / "t1-trees").is_dir()  # the tree member is a Ray Train run too
    assert trained["trees"]["head_config"]["kwargs"]["depth"] >= 1
    spec = get_spec("efficientnet_lite0")
    model_dir = tmp_path / "model"
    export_model(
        model_dir,
        trained,
        cv,
        y,
        cfg,
        spec=spec,
        inputs={"appearance": x},
        training_data={"clips": len(y)},
        version="test-1",
    )
    man = read_manifest(model_dir)
    assert [m.name for m in man.members] == ["stats", "conv", "trees"]
    assert abs(sum(man.weights) - 1) < 1e-6 and 0 < man.threshold < 1 and man.temperature > 0
    assert man.preprocessing.hash == spec.hash()

    model = EnsembleModel(model_dir)
    out = model.predict(x)
    assert out.probability.shape == (len(y),)
    assert ((out.probability >= man.threshold) == out.violent).all()
    acc = (out.violent == (y == 1)).mean()
    assert acc > 0.85
    assert set(out.confidence) <= {"HIGH", "MEDIUM", "LOW"}

    # a rerun of the same Ray Train runs resumes from their final checkpoints instead of retraining
    again = train_final({"appearance": x}, y, cfg, epochs={"stats": 8, "conv": 8}, run_name="t1")
    for name in trained:
        for k, v in trained[name]["state_dict"].items():
            assert torch.equal(v, again[name]["state_dict"][k])


def test_manifest_tamper_is_detected(tmp_path: Path) -> None:
    from nexara.errors import ModelError

    x, y, groups = _synthetic(n_sources=6, per_source=6)
    cfg = _cfg(tmp_path, inner_folds=0)  # one inner split: 3 training sources per fold
    cv = cross_validate({"appearance": x}, y, groups, cfg, k=2, seed=1)
    trained = {name: {"state_dict": {}, "head_config": {}} for name in cv.member_names}
    from training.loop import train_member

    for m in cfg.training.members:
        res = train_member(x, y, x, y, m.model_copy(update={"epochs": 2}), cfg.training.train)
        trained[m.name] = {"state_dict": res.state_dict, "head_config": res.head_config}
    export_model(
        tmp_path / "m",
        trained,
        cv,
        y,
        cfg,
        spec=get_spec("efficientnet_lite0"),
        inputs={"appearance": x},
        training_data={},
        version="t",
    )
    (tmp_path / "m" / "stats.pt").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="does not match its sha256"):
        read_manifest(tmp_path / "m")
    with pytest.raises(ModelError, match="manifest not found"):
        read_manifest(tmp_path / "nothing")


def test_nested_cv_needs_enough_sources(tmp_path: Path) -> None:
    from nexara.errors import TrainingError

    x, y, groups = _synthetic(n_sources=6, per_source=4)
    with pytest.raises(TrainingError, match=r"4 inner folds need as many sources.*it has 3"):
        cross_validate({"appearance": x}, y, groups, _cfg(tmp_path), k=2, seed=0)
