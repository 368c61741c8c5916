"""Per-dataset metrics, leave-one-dataset-out folds, the manifest join and the report sections, on
synthetic out-of-fold arrays (no Ray, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from nexara.errors import TrainingError
from training.cv import CVResult
from training.datasets import (
    DatasetLabels,
    dataset_metrics,
    describe_folds,
    labels_from_manifest,
    leave_one_dataset_out,
    lodo_inner_folds,
    per_dataset,
)
from training.manifest import MANIFEST_SCHEMA, write_manifest
from training.report import dataset_table, write_cv_report


def _labels() -> tuple[np.ndarray, DatasetLabels]:
    """8 clips of dataset "a" (4 sources) and 6 of "b" (3 sources, two hard negatives)."""
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0])  # a: 8 clips, b: 6
    datasets = np.array(["a"] * 8 + ["b"] * 6, dtype=object)
    sources = np.array(
        ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4", "b1", "b2", "b1", "b2", "b3", "b3"], dtype=object
    )
    hard = np.zeros(14, dtype=bool)
    hard[[12, 13]] = True
    return y, DatasetLabels(datasets, hard, sources)


def _cv(folds: list[list[int]], names: list[str], probs: np.ndarray, thr: np.ndarray) -> CVResult:
    summary = {n: {"metrics": {}} for n in ("m1", "ensemble", "baseline")}
    return CVResult(
        k=len(folds),
        member_names=["m1"],
        fold_reports={},
        summary=summary,
        oof_member_probs=probs[:, None],
        oof_ensemble_probs=probs,
        oof_baseline_probs=probs,
        best_epochs={"m1": [1] * len(folds)},
        folds=folds,
        oof_member_thresholds=thr[:, None],
        oof_ensemble_thresholds=thr,
        fold_names=names,
        inner_folds=2,
    )


def test_dataset_metrics_decide_each_clip_at_its_folds_threshold() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.6, 0.3, 0.5, 0.2, 0.7])
    thr = np.array([0.5, 0.2, 0.6, 0.1, 0.9])  # decisions: 1, 1, 0, 1, 0
    hn = np.array([False, False, False, True, True])
    m = dataset_metrics(y, p, thr, hn)
    assert (m["n"], m["n_pos"], m["n_neg"], m["n_hard_negative"]) == (5, 2, 3, 2)
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["recall"] == 1.0 and m["fpr"] == pytest.approx(1 / 3) and m["hard_negative_fpr"] == 0.5
    assert m["roc_auc"] == pytest.approx(3 / 6)
    one_class = dataset_metrics(np.zeros(3, int), np.array([0.1, 0.9, 0.2]), np.full(3, 0.5), np.zeros(3, bool))
    assert one_class["roc_auc"] is None and one_class["recall"] is None and one_class["hard_negative_fpr"] is None


def test_per_dataset_splits_pooled_oof_predictions() -> None:
    y, labels = _labels()
    p = np.where(y == 1, 0.8, 0.2)
    p[12] = 0.9  # one hard negative scored as a fight
    cv = _cv([list(range(0, 7)), list(range(7, 14))], ["fold0", "fold1"], p, np.full(14, 0.5))
    out = per_dataset(cv, y, labels)
    assert list(out) == ["a", "b", "all"]
    assert set(out["a"]) == {"m1", "ensemble", "baseline"}
    assert out["a"]["ensemble"]["accuracy"] == 1.0 and out["a"]["ensemble"]["hard_negative_fpr"] is None
    assert out["b"]["ensemble"]["hard_negative_fpr"] == 0.5 and out["b"]["ensemble"]["fpr"] == 0.25
    assert out["all"]["ensemble"]["n"] == 14
    table = dataset_table(out)
    assert "hard negative fpr" in table and "| b | **ensemble** | 6 (2 / 4, 2 hard) |" in table
    lines = describe_folds(cv, labels)
    assert "over all 7 sources of 2 dataset(s), 2 folds" in lines[0]
    assert lines[1] == "- a: 8 clips, 4 sources, in fold0, fold1" and lines[2] == "- b: 6 clips, 3 sources, in fold1"


def test_leave_one_dataset_out_folds_and_inner_folds() -> None:
    _, labels = _labels()
    folds, names = leave_one_dataset_out(labels)
    assert names == ["a", "b"]
    assert [te.tolist() for _, te in folds] == [list(range(8)), list(range(8, 14))]
    assert all(not set(tr) & set(te) for tr, te in folds)
    assert lodo_inner_folds(labels, folds, 4) == 3  # "a" held out: trains on b's 3 sources
    assert lodo_inner_folds(labels, folds, 2) == 2 and lodo_inner_folds(labels, folds, 0) == 0
    single = DatasetLabels.single(labels.sources)
    with pytest.raises(TrainingError, match="at least 2 datasets"):
        leave_one_dataset_out(single)
    one_source = DatasetLabels(
        labels.datasets, labels.hard_negative, np.where(labels.datasets == "b", "b", labels.sources)
    )
    with pytest.raises(TrainingError, match="single source"):
        lodo_inner_folds(one_source, folds, 4)


def test_labels_join_the_manifest_on_content_hash(tmp_path: Path) -> None:
    rows = [
        {
            "path": f"/c/{i}.mp4",
            "label": i % 2,
            "source": f"s{i}",
            "dataset": "a" if i < 2 else "b",
            "hard_negative": i == 2,
            "content_hash": f"h{i}",
            "split": "fold0",
        }
        for i in range(4)
    ]
    manifest = tmp_path / "manifest.parquet"
    write_manifest(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)
    meta = pa.table({"path": ["/c/2.mp4", "/c/0.mp4"], "content_hash": ["h2", "h0"], "source": ["s2", "s0"]})
    labels = labels_from_manifest(meta, manifest)
    assert labels.datasets.tolist() == ["b", "a"] and labels.hard_negative.tolist() == [True, False]
    assert labels_from_manifest(meta, None).names == ["all"]
    stray = pa.table({"path": ["/elsewhere.mp4"], "content_hash": ["hx"], "source": ["s9"]})
    with pytest.raises(TrainingError, match=r"1 stored clip\(s\) are not in manifest .*elsewhere.mp4"):
        labels_from_manifest(stray, manifest)


def test_report_has_pooled_per_dataset_and_lodo_sections(tmp_path: Path) -> None:
    y, labels = _labels()
    rng = np.random.default_rng(0)
    p = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.1, len(y)), 0, 1)
    summary_metrics = {"accuracy": {"mean": 0.9, "std": 0.01}, "roc_auc": {"mean": 0.95, "std": 0.02}}
    cv = _cv([list(range(0, 7)), list(range(7, 14))], ["fold0", "fold1"], p, np.full(14, 0.5))
    for s in cv.summary.values():
        s["metrics"] = summary_metrics
    cv.summary["ensemble"]["confusion"] = [[5, 1], [1, 7]]
    lodo = _cv([list(range(8)), list(range(8, 14))], ["a", "b"], p, np.full(14, 0.4))
    path = write_cv_report(cv, y, tmp_path, title="two datasets", labels=labels, lodo=lodo)
    text = path.read_text()
    assert "## Pooled" in text and "## Per dataset" in text and "## Leave one dataset out" in text
    assert "Leave one dataset out: 2 folds, each holds out one whole dataset" in text
    doc = json.loads((tmp_path / "report.json").read_text())
    assert set(doc["per_dataset"]) == {"a", "b", "all"}
    assert doc["leave_one_dataset_out"]["held_out"] == ["a", "b"]
    assert doc["leave_one_dataset_out"]["per_dataset"]["b"]["ensemble"]["n_hard_negative"] == 2
