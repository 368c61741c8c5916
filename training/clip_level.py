"""Clip-level figures of a CV run on windows.

A model on a clip backbone is trained and cross-validated on windows (several per clip), as the live path
scores them. A clip's score is then an aggregate of its windows' out-of-fold probabilities: ``max`` (a clip
alerts when any of its windows does: what the live path does) or ``mean``. A clip's windows share its
source, so the grouped CV keeps them in one fold, scored by one model at one threshold; the clip is decided
at that threshold. :func:`clip_level` turns a window-level :class:`~training.cv.CVResult` into the same
record over clips, so every report function reads both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from nexara.errors import TrainingError
from nexara.metrics import aggregate_folds, classification_report
from training.cv import CVResult
from training.datasets import DatasetLabels

ClipAggregation = Literal["max", "mean"]
CLIP_AGGREGATIONS: tuple[ClipAggregation, ...] = ("max", "mean")


def clip_groups(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each clip's first window, clip number of each window), clips in order of first window."""
    _, first, inverse = np.unique(np.asarray(clips, dtype=str), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def aggregate_windows(p: np.ndarray, inverse: np.ndarray, n_clips: int, rule: ClipAggregation) -> np.ndarray:
    """Per-clip max or mean of window scores ``p`` (``inverse``: the clip number of each window)."""
    if rule == "max":
        out = np.full(n_clips, -np.inf)
        np.maximum.at(out, inverse, p)
        return out
    if rule == "mean":
        return np.bincount(inverse, weights=p, minlength=n_clips) / np.bincount(inverse, minlength=n_clips)
    raise TrainingError(f"unknown clip aggregation {rule!r}; use one of {', '.join(CLIP_AGGREGATIONS)}")


def _same_within_clip(name: str, values: np.ndarray, first: np.ndarray, inverse: np.ndarray) -> None:
    if not np.array_equal(values, values[first][inverse]):
        bad = int(inverse[np.flatnonzero(values != values[first][inverse])[0]])
        raise TrainingError(f"the windows of clip number {bad} differ in {name}; a clip's windows must share it")


def clip_level(
    cv: CVResult, y: np.ndarray, labels: DatasetLabels, rule: ClipAggregation
) -> tuple[CVResult, np.ndarray, DatasetLabels]:
    """The CV of windows seen per clip: out-of-fold scores aggregated by ``rule``, folds and per-fold
    reports over clips, with the clips' labels and dataset labels."""
    if labels.clips is None:
        raise TrainingError("clip-level figures need the clip of every window (rows of a window store)")
    first, inverse = clip_groups(labels.clips)
    n_clips = len(first)
    fold_of = np.full(len(y), -1)
    for fi, rows in enumerate(cv.folds):
        fold_of[np.asarray(rows, dtype=np.int64)] = fi
    for name, values in (("label", np.asarray(y)), ("fold", fold_of), ("source", labels.sources)):
        _same_within_clip(name, values, first, inverse)

    def agg(p: np.ndarray) -> np.ndarray:
        return aggregate_windows(p, inverse, n_clips, rule)

    members = np.stack([agg(cv.oof_member_probs[:, j]) for j in range(len(cv.member_names))], axis=1)
    ensemble, baseline = agg(cv.oof_ensemble_probs), agg(cv.oof_baseline_probs)
    thr_members, thr_ensemble = cv.oof_member_thresholds[first], cv.oof_ensemble_thresholds[first]
    y_clip = np.asarray(y)[first]
    clip_fold = fold_of[first]
    folds = [np.flatnonzero(clip_fold == fi) for fi in range(len(cv.folds))]
    reports: dict[str, list] = {name: [] for name in [*cv.member_names, "ensemble", "baseline"]}
    for te in folds:
        for j, name in enumerate(cv.member_names):
            reports[name].append(classification_report(y_clip[te], members[te, j], float(thr_members[te[0], j])))
        reports["ensemble"].append(classification_report(y_clip[te], ensemble[te], float(thr_ensemble[te[0]])))
        reports["baseline"].append(classification_report(y_clip[te], baseline[te], 0.5))
    clip_cv = replace(
        cv,
        fold_reports=reports,
        summary={name: aggregate_folds(r) for name, r in reports.items()},
        oof_member_probs=members,
        oof_ensemble_probs=ensemble,
        oof_baseline_probs=baseline,
        folds=[te.tolist() for te in folds],
        oof_member_thresholds=thr_members,
        oof_ensemble_thresholds=thr_ensemble,
    )
    clip_labels = DatasetLabels(labels.datasets[first], labels.hard_negative[first], labels.sources[first])
    return clip_cv, y_clip, clip_labels
