"""Training on a clip backbone's windows, without Ray: a synthetic window store (real Parquet) loads as one
row per window with its clip's label, source, dataset and hard-negative flag; grouped folds never split a
clip; the report gives window- and clip-level (max, mean) figures per dataset and left out; an exported
model records its clip spec, hop and aggregation, loads, scores windows, and refuses another recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from nexara.backbones import backbone_kind, effective_clip_spec
from nexara.config import load_config, parse_config
from nexara.errors import ModelError, NexaraError, TrainingError
from nexara.metrics import aggregate_folds, classification_report
from nexara.model_manifest import feature_config, read_manifest
from nexara.voting import EnsembleModel
from training.clip_level import clip_groups, clip_level
from training.cv import CVResult, grouped_folds
from training.datasets import leave_one_dataset_out
from training.export import export_model
from training.loop import train_member
from training.pipeline import load_dataset_labels, load_training_data
from training.report import console_summary, write_cv_report

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from window_factory import DIM, MOTION_DIM, T_PRIME, window_config_yaml, write_window_store  # noqa: E402

MEMBERS = """\
    - {name: i3d_lr, head: probe, input: appearance, head_kwargs: {hidden: 0}}
    - {name: i3d_trees, head: forest, input: appearance, head_kwargs: {n_trees: 20}}
    - {name: flow_trees, head: forest, input: motion, head_kwargs: {n_trees: 20}}"""


@pytest.fixture
def store(tmp_path: Path):
    cfg = parse_config(window_config_yaml(tmp_path / "ray_results", MEMBERS))
    features = write_window_store(tmp_path, cfg, {"city": 4, "peru": 3})
    return cfg, features


def _fake_cv(
    y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], probs: np.ndarray, names: list[str]
) -> CVResult:
    """The record cross_validate returns, with given out-of-fold member probabilities (the mean is the
    ensemble, 1 - p of the first member the baseline) and thresholds 0.4 (members) and 0.6 (ensemble)."""
    ens, base = probs.mean(1), 1 - probs[:, 0]
    reports: dict[str, list] = {n: [] for n in [*names, "ensemble", "baseline"]}
    for _, te in folds:
        for j, n in enumerate(names):
            reports[n].append(classification_report(y[te], probs[te, j], 0.4))
        reports["ensemble"].append(classification_report(y[te], ens[te], 0.6))
        reports["baseline"].append(classification_report(y[te], base[te], 0.5))
    return CVResult(
        k=len(folds),
        member_names=names,
        fold_reports=reports,
        summary={n: aggregate_folds(r) for n, r in reports.items()},
        oof_member_probs=probs,
        oof_ensemble_probs=ens,
        oof_baseline_probs=base,
        best_epochs={n: [1] * len(folds) for n in names},
        folds=[te.tolist() for _, te in folds],
        oof_member_thresholds=np.full(probs.shape, 0.4),
        oof_ensemble_thresholds=np.full(len(y), 0.6),
        fold_names=[f"fold{i}" for i in range(len(folds))],
    )


def test_window_rows_carry_their_clip(store) -> None:
    cfg, features = store
    inputs, y, groups, meta = load_training_data(features, cfg)
    n = meta.num_rows
    assert n == 7 * 6 * 2  # 7 sources x 6 clips of 1, 2, 3 windows
    assert inputs["appearance"].shape == (n, T_PRIME, DIM) and inputs["motion"].shape == (n, 1, MOTION_DIM)
    labels = load_dataset_labels(features, meta, None)  # manifest.parquet beside the features
    assert labels.clips is not None and len(set(labels.clips)) == 42
    rows = meta.to_pylist()
    for i, r in enumerate(rows):
        clip = r["content_hash"]
        dataset, source_no, clip_no = clip.split("-")
        assert labels.clips[i] == clip and groups[i] == r["source"] == f"{dataset}{source_no}"
        assert y[i] == int(clip_no) % 2 and labels.datasets[i] == dataset
        assert labels.hard_negative[i] == (int(clip_no) == 4)  # every window of a hard-negative clip
    assert int(labels.hard_negative.sum()) == 7 * 2  # clip 4 of each source has 2 windows
    for fold_rows in (te for _, te in grouped_folds(y, groups, 3, seed=0)):
        inside = set(labels.clips[fold_rows])
        outside = set(labels.clips[np.setdiff1d(np.arange(n), fold_rows)])
        assert not inside & outside  # a clip's windows are always in one fold


def test_clip_level_report_and_leave_one_dataset_out(store, tmp_path: Path) -> None:
    cfg, features = store
    _, y, groups, meta = load_training_data(features, cfg)
    labels = load_dataset_labels(features, meta, None)
    rng = np.random.default_rng(1)
    probs = np.clip(0.3 * y[:, None] + rng.uniform(0, 0.7, (len(y), 2)), 0, 1)
    cv = _fake_cv(y, grouped_folds(y, groups, 3, seed=0), probs, ["a", "b"])
    lodo_folds, _ = leave_one_dataset_out(labels)
    lodo = _fake_cv(y, lodo_folds, probs, ["a", "b"])
    lodo.fold_names = ["city", "peru"]

    first, inverse = clip_groups(labels.clips)
    for rule, reduce in (("max", np.max), ("mean", np.mean)):
        clip_cv, y_clip, clip_labels = clip_level(cv, y, labels, rule)
        expected = np.array([reduce(probs[inverse == c, 1]) for c in range(len(first))])
        np.testing.assert_allclose(clip_cv.oof_member_probs[:, 1], expected)
        np.testing.assert_array_equal(y_clip, y[first])
        assert sorted(np.concatenate(clip_cv.folds).tolist()) == list(range(42))
        assert list(clip_labels.datasets).count("peru") == 18 and int(clip_labels.hard_negative.sum()) == 7

    out = tmp_path / "report"
    write_cv_report(cv, y, out, title="windows", labels=labels, lodo=lodo)
    doc = json.loads((out / "report.json").read_text())
    assert doc["rows"] == "windows" and doc["per_dataset"]["all"]["ensemble"]["n"] == len(y)
    clip_max = doc["clip_level"]["max"]
    assert set(clip_max["per_dataset"]) == {"city", "peru", "all"}
    assert (
        clip_max["per_dataset"]["all"]["a"]["n"] == 42 and clip_max["per_dataset"]["peru"]["a"]["n_hard_negative"] == 3
    )
    # clip-level accuracy of member a by the max, pooled, at its threshold 0.4
    p_max = np.array([probs[inverse == c, 0].max() for c in range(42)])
    assert clip_max["per_dataset"]["all"]["a"]["accuracy"] == pytest.approx(np.mean((p_max >= 0.4) == (y[first] == 1)))
    assert set(doc["clip_level"]["mean"]["leave_one_dataset_out"]) == {"city", "peru"}
    text = (out / "report.md").read_text()
    assert "84 windows of 42 clips" in text and "windows (fight / no)" in text
    for heading in ("## Clips: max of the window probabilities", "## Clips: mean of the window probabilities"):
        assert heading in text
    assert "Leave one dataset out, clips by the max" in text and "- peru: 36 windows of 18 clips" in text
    summary = console_summary(cv, y, labels, lodo)
    assert "clips (max of the window probabilities)" in summary and "**ensemble**" in summary


def test_clip_level_refuses_a_clip_split_across_folds(store) -> None:
    cfg, features = store
    _, y, _, meta = load_training_data(features, cfg)
    labels = load_dataset_labels(features, meta, None)
    idx = np.arange(len(y))
    split = [(idx[idx % 2 == 0], idx[idx % 2 == 1]), (idx[idx % 2 == 1], idx[idx % 2 == 0])]  # windows alternate
    cv = _fake_cv(y, split, np.full((len(y), 1), 0.5), ["a"])
    with pytest.raises(TrainingError, match="differ in fold"):
        clip_level(cv, y, labels, "max")


def test_exported_clip_model_records_windows_loads_and_refuses_another_recipe(store, tmp_path: Path) -> None:
    cfg, features = store
    inputs, y, groups, meta = load_training_data(features, cfg)
    labels = load_dataset_labels(features, meta, None)
    trained = {}
    for m in cfg.training.members:
        x = inputs[m.input]
        res = train_member(x, y, x, y, m.model_copy(update={"epochs": 3}), cfg.training.train)
        trained[m.name] = {"state_dict": res.state_dict, "head_config": res.head_config}
    rng = np.random.default_rng(2)
    probs = np.clip(0.4 * y[:, None] + rng.uniform(0, 0.6, (len(y), 3)), 0, 1)
    cv = _fake_cv(y, grouped_folds(y, groups, 3, seed=0), probs, [m.name for m in cfg.training.members])
    spec = effective_clip_spec(cfg)
    out = tmp_path / "model"
    export_model(
        out, trained, cv, y, cfg, spec=spec.frame_spec(), inputs=inputs, training_data={}, version="w1",
        clips=labels.clips,
    )  # fmt: skip
    man = read_manifest(out)
    assert man.backbone == "i3d_kinetics400" and man.clip is not None and man.clip.hash == spec.hash()
    assert man.window_hop_s == 1.0 and man.clip_aggregation == "max" and man.frames_per_clip == spec.num_frames
    assert man.feature_dim == DIM and man.motion is not None and man.motion.dim == MOTION_DIM
    assert man.cv_metrics["oof_ensemble_clips_max"]["n"] == 42 and man.cv_metrics["oof_ensemble"]["n"] == len(y)

    model = EnsembleModel(out)
    scored = model.predict(inputs["appearance"], inputs["motion"][:, 0])
    assert scored.member_probs.shape == (len(y), 3)
    assert np.mean(scored.violent == (y == 1)) > 0.8  # fitted on these windows

    fc = feature_config(man)
    assert fc.clip == spec and fc.clip_aggregation == "max"
    fc.check_clip_spec(cfg.model.backbone, effective_clip_spec(cfg))  # the configured recipe loads
    other = parse_config(window_config_yaml(tmp_path, MEMBERS, extra="windows: {window_s: 3.0}"))
    with pytest.raises(ModelError, match=f"expects clip backbone i3d_kinetics400 with clip spec {spec.hash()}"):
        fc.check_clip_spec(other.model.backbone, effective_clip_spec(other))


def test_no_window_store_is_a_clear_error(tmp_path: Path) -> None:
    cfg = parse_config(window_config_yaml(tmp_path, MEMBERS))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NexaraError, match="no window store here"):
        load_training_data(tmp_path / "empty", cfg)


def test_model_v2_config() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "model-v2.yaml")
    assert backbone_kind(cfg.model.backbone) == "clip" and cfg.features.motion
    members = {m.name: m for m in cfg.training.members}
    assert list(members) == ["i3d_lr", "i3d_attn", "i3d_rf", "flow_trees"]
    assert members["i3d_lr"].head == "probe" and members["i3d_lr"].head_kwargs["hidden"] == 0
    assert members["i3d_attn"].head == "attention" and members["i3d_attn"].input == "appearance"
    assert cfg.training.threshold_mode == "balanced"
    for name, source, kind in (("i3d_rf", "appearance", "random_forest"), ("flow_trees", "motion", "extra_trees")):
        m = members[name]
        assert m.head == "forest" and m.input == source
        assert m.head_kwargs == {"kind": kind, "n_trees": 500, "max_features": "sqrt", "min_samples_leaf": 2}
