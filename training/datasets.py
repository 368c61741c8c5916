"""Which dataset each training clip comes from, and what the CV says per dataset.

The feature store keeps path, label and source; the dataset a clip belongs to and its hard-negative flag
come from the manifest the features were extracted from (joined on the content hash, so the rows of a
window store - several windows per clip - each get their clip's). With them:
metrics per dataset from the out-of-fold predictions of a CV (each clip scored by its own fold's model at
its own fold's threshold), the leave-one-dataset-out folds (fitted by the same nested CV code,
:func:`training.cv.cross_validate` with given folds) and a plain statement of how the folds were formed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.metrics import roc_auc_score

from nexara.errors import TrainingError
from training.cv import CVResult
from training.manifest import read_manifest

log = logging.getLogger(__name__)

SINGLE_DATASET = "all"  # the one dataset of clips whose manifest names none


@dataclass(frozen=True, slots=True)
class DatasetLabels:
    """Per training row (a clip, or a window of a clip), aligned with the training arrays: dataset name,
    hard-negative flag, source and, for windows, the clip (content hash) each row is a window of."""

    datasets: np.ndarray  # (N,) object
    hard_negative: np.ndarray  # (N,) bool
    sources: np.ndarray  # (N,) object
    clips: np.ndarray | None = None  # (N,) object: the clip of each window; None when rows are clips

    @classmethod
    def single(cls, sources: np.ndarray, clips: np.ndarray | None = None) -> DatasetLabels:
        n = len(sources)
        return cls(
            np.full(n, SINGLE_DATASET, dtype=object),
            np.zeros(n, dtype=bool),
            np.asarray(sources, dtype=object),
            clips,
        )

    @property
    def names(self) -> list[str]:
        return sorted({str(d) for d in self.datasets})


def window_clips(meta: pa.Table) -> np.ndarray | None:
    """The clip (content hash) of every row of a window store's ``meta``; None for a clip-per-row store."""
    if "window_index" not in meta.column_names:
        return None
    return np.asarray(meta.column("content_hash").to_pylist(), dtype=object)


def labels_from_manifest(meta: pa.Table, manifest: Path | None) -> DatasetLabels:
    """Dataset and hard-negative flag of every stored row (a clip, or a window of one: rows of ``meta``)
    from ``manifest``, by the row's clip content hash.

    Without a manifest (or one written before manifests had datasets) every clip is in one dataset. A
    stored clip the manifest does not list is an error: its dataset would be a guess.
    """
    sources = np.asarray(meta.column("source").to_pylist(), dtype=object)
    clips = window_clips(meta)
    if manifest is None:
        log.warning("no manifest given: every clip counts as one dataset (pass --manifest for per-dataset metrics)")
        return DatasetLabels.single(sources, clips)
    table = read_manifest(manifest)
    if "dataset" not in table.column_names:
        log.warning("%s has no dataset column (written before datasets): one dataset", manifest)
        return DatasetLabels.single(sources, clips)
    rows = table.select(["content_hash", "dataset", "hard_negative"]).to_pylist()
    by_hash = {r["content_hash"]: r for r in rows if r["content_hash"]}
    hashes = meta.column("content_hash").to_pylist()
    unknown = {h: p for h, p in zip(hashes, meta.column("path").to_pylist(), strict=True) if h not in by_hash}
    if unknown:
        raise TrainingError(
            f"{len(unknown)} stored clip(s) are not in manifest {manifest} (first: {next(iter(unknown.values()))}); "
            "pass the manifest the features were extracted from (--manifest) or extract into a fresh feature folder"
        )
    return DatasetLabels(
        np.asarray([by_hash[h]["dataset"] for h in hashes], dtype=object),
        np.asarray([bool(by_hash[h]["hard_negative"]) for h in hashes], dtype=bool),
        sources,
        clips,
    )


def leave_one_dataset_out(labels: DatasetLabels) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """One fold per dataset: train on every other dataset, score all of this one."""
    names = labels.names
    if len(names) < 2:
        raise TrainingError(
            f"leave-one-dataset-out needs clips of at least 2 datasets, found {names}; scan several CSVs into one "
            "manifest (nexara dataset scan --csv A --csv B) and pass it with --manifest"
        )
    idx = np.arange(len(labels.datasets))
    folds = [(idx[labels.datasets != n], idx[labels.datasets == n]) for n in names]
    return folds, names


def lodo_inner_folds(labels: DatasetLabels, folds: list[tuple[np.ndarray, np.ndarray]], requested: int) -> int:
    """Inner grouped folds for leave-one-dataset-out: ``requested``, capped by the fewest sources any
    fold trains on (a dataset with 3 sources trains with 3 inner folds); one inner split needs 2 sources."""
    fewest = min(len(set(labels.sources[tr])) for tr, _ in folds)
    if fewest < 2:
        raise TrainingError(
            "leave-one-dataset-out: a fold trains on a single source, which leaves nothing to validate on"
        )
    if requested >= 2 and fewest < requested:
        log.info("leave-one-dataset-out: %d inner folds (a fold trains on only %d sources)", fewest, fewest)
        return fewest
    return requested


def _undefined_none(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def dataset_metrics(y: np.ndarray, p: np.ndarray, thr: np.ndarray, hard_negative: np.ndarray) -> dict[str, Any]:
    """Accuracy, ROC AUC, recall, FPR and the hard negatives' FPR of scores decided at per-clip thresholds;
    None where undefined (one class only, no hard negatives)."""
    pred = p >= thr
    pos, neg = y == 1, y == 0
    both = bool(pos.any() and neg.any())
    return {
        "n": int(y.size),
        "n_pos": int(pos.sum()),
        "n_neg": int(neg.sum()),
        "n_hard_negative": int(hard_negative.sum()),
        "accuracy": _undefined_none(float(np.mean(pred == pos))) if y.size else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "recall": _undefined_none(float(pred[pos].mean())) if pos.any() else None,
        "fpr": _undefined_none(float(pred[neg].mean())) if neg.any() else None,
        "hard_negative_fpr": float(pred[hard_negative].mean()) if hard_negative.any() else None,
    }


def model_scores(cv: CVResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Out-of-fold probabilities and the threshold each clip was decided at, per member, ensemble, baseline."""
    out = {name: (cv.oof_member_probs[:, j], cv.oof_member_thresholds[:, j]) for j, name in enumerate(cv.member_names)}
    out["ensemble"] = (cv.oof_ensemble_probs, cv.oof_ensemble_thresholds)
    out["baseline"] = (cv.oof_baseline_probs, np.full(len(cv.oof_baseline_probs), 0.5))
    return out


def per_dataset(cv: CVResult, y: np.ndarray, labels: DatasetLabels) -> dict[str, dict[str, dict[str, Any]]]:
    """dataset -> model -> :func:`dataset_metrics` over that dataset's out-of-fold predictions, plus
    ``"all"`` (every clip pooled) when there are several datasets."""
    groups: dict[str, np.ndarray] = {n: labels.datasets == n for n in labels.names}
    if len(groups) > 1:
        groups["all"] = np.ones(len(y), dtype=bool)
    return {
        name: {
            model: dataset_metrics(y[mask], p[mask], thr[mask], labels.hard_negative[mask])
            for model, (p, thr) in model_scores(cv).items()
        }
        for name, mask in groups.items()
    }


def describe_folds(cv: CVResult, labels: DatasetLabels) -> list[str]:
    """How the outer folds were formed, in words, with the folds each dataset's sources fell into."""
    fold_of = np.empty(len(labels.sources), dtype=object)
    for name, members in zip(cv.fold_names, cv.folds, strict=True):
        fold_of[np.asarray(members, dtype=np.int64)] = name
    inner = f"{cv.inner_folds} inner grouped folds" if cv.inner_folds else "one inner grouped split"
    lodo = set(cv.fold_names) == set(labels.names) and len(labels.names) > 1
    if lodo:
        head = (
            f"Leave one dataset out: {cv.k} folds, each holds out one whole dataset and the members are fitted on "
            f"the others ({inner} for early stopping, ensemble weights and threshold)."
        )
    else:
        head = (
            f"Outer folds: stratified K-fold grouped by source over all {len(set(labels.sources))} sources of "
            f"{len(labels.names)} dataset(s), {cv.k} folds (a source's clips are always in one fold; {inner} inside "
            "each). A dataset with few sources fills few folds, and its clips are scored by models trained on "
            "the other datasets plus its other sources."
        )
    if labels.clips is not None:
        head += " Rows are windows of clips; a clip's windows share its source, so they are never split."
    lines = [head]
    for name in labels.names:
        mask = labels.datasets == name
        spans = sorted({str(f) for f in fold_of[mask]})
        rows = f"{int(mask.sum())} clips"
        if labels.clips is not None:
            rows = f"{int(mask.sum())} windows of {len(set(labels.clips[mask]))} clips"
        lines.append(f"- {name}: {rows}, {len(set(labels.sources[mask]))} sources, in {', '.join(spans)}")
    return lines
