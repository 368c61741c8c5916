"""Grouped cross-validation of the ensemble on Ray tasks.

Grouped (by ``source``) stratified K-fold. Every member fit is a Ray task, so folds and members run in
parallel across the cluster. Inside a fold (``training.inner_folds`` >= 2, the default), an inner grouped
K-fold over the fold's training sources early-stops the members and gives out-of-fold predictions on all
of the fold's training clips, which fit the ensemble weights, temperature and threshold; then every
member is refit on all of the fold's training clips for its median inner best epoch
(:func:`training.loop.refit_epochs`) and scores the held-out fold - the same procedure that makes the
shipped model from all clips. With ``inner_folds: 0`` one inner split of ``inner_val_frac`` does both
(faster, noisier). The held-out fold is touched only for scoring. The plain baseline (logistic
regression on mean + std + mean-abs-difference of the frame features) runs on the same folds.
Leave one dataset out is the same procedure with given outer folds (one whole dataset held out each).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nexara.config import NexaraConfig, TrainingSection
from nexara.errors import TrainingError
from nexara.metrics import (
    aggregate_folds,
    apply_temperature,
    choose_threshold,
    classification_report,
    fit_ensemble_weights,
    fit_temperature,
    logit,
    sigmoid,
    soft_vote,
)
from nexara.training_config import MemberConfig, TrainConfig
from training.loop import predict_logits, refit_epochs, refit_settings, train_member
from training.manifest import greedy_group_split

log = logging.getLogger(__name__)

# one member fit of cross_validate: (fit, validation, scored) clip indices, the member, its settings
_Job = tuple[np.ndarray, np.ndarray, np.ndarray, MemberConfig, TrainConfig]


# --- splits -------------------------------------------------------------------------------------


def grouped_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold grouped by source: no source ever appears on both sides."""
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise TrainingError(f"{k}-fold CV needs at least {k} distinct sources, the data has {n_groups}")
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in sgkf.split(np.zeros(len(y)), y, groups)]


def inner_split(
    y: np.ndarray, groups: np.ndarray, idx: np.ndarray, frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into fit / validation parts by whole sources, class-balanced."""
    names = greedy_group_split(y[idx], groups[idx], {"fit": 1 - frac, "val": frac}, seed)
    return idx[names == "fit"], idx[names == "val"]


# --- one member fit (plain Ray task) ------------------------------------------------------------


def _fit_and_score(
    inputs: dict[str, np.ndarray],
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    score_idx: np.ndarray,
    member: MemberConfig,
    train_cfg: TrainConfig,
    threads: int,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    x = member_input(inputs, member)
    res = train_member(x[fit_idx], y[fit_idx], x[val_idx], y[val_idx], member, train_cfg)
    from nexara.heads import create_head

    head = create_head(**res.head_config)
    head.load_state_dict(res.state_dict)
    return {
        "member": member.name,
        "best_epoch": res.best_epoch,
        "val_logits": predict_logits(head, x[val_idx]),
        "score_logits": predict_logits(head, x[score_idx]),
    }


def member_input(inputs: dict[str, np.ndarray], member: MemberConfig) -> np.ndarray:
    if member.input not in inputs:
        raise TrainingError(
            f"member {member.name} reads the '{member.input}' input, which the feature store lacks "
            f"(it has {sorted(inputs)}); extract with features.motion: true"
        )
    return inputs[member.input]


def baseline_features(x: np.ndarray) -> np.ndarray:
    """The shared README's probe: mean, std and mean absolute temporal difference of the frame features
    (zero for a single time step, as a short clip backbone window gives)."""
    diff = np.abs(np.diff(x, axis=1)).mean(1) if x.shape[1] > 1 else np.zeros_like(x[:, 0])
    return np.concatenate([x.mean(1), x.std(1), diff], axis=1)


def _baseline_probs(x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    f = baseline_features(x)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=5000))
    model.fit(f[tr], y[tr])
    return model.predict_proba(f[te])[:, 1]


@dataclass
class CVResult:
    k: int  # number of outer folds (held-out datasets for leave-one-dataset-out)
    member_names: list[str]
    fold_reports: dict[str, list[dict[str, Any]]]  # name (member / "ensemble" / "baseline") -> per fold
    summary: dict[str, dict[str, Any]]  # name -> aggregate_folds(...)
    oof_member_probs: np.ndarray  # (N, M) out-of-fold member probabilities
    oof_ensemble_probs: np.ndarray  # (N,) out-of-fold calibrated ensemble probability
    oof_baseline_probs: np.ndarray
    best_epochs: dict[str, list[int]]
    folds: list[list[int]] = field(default_factory=list)
    wall_s: float = 0.0
    # the decision threshold each clip was scored at (its fold's): (N, M) members, (N,) ensemble; the
    # baseline decides at 0.5
    oof_member_thresholds: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    oof_ensemble_thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fold_names: list[str] = field(default_factory=list)  # "fold0".. or the held-out dataset
    inner_folds: int = 0  # inner grouped folds used (0 = one inner split)


def fit_calibration(member_probs: np.ndarray, y: np.ndarray, sec: TrainingSection) -> tuple[np.ndarray, float, float]:
    w = fit_ensemble_weights(member_probs, y, shrinkage=sec.weight_shrinkage)
    z = logit(soft_vote(member_probs, w))
    t = fit_temperature(z, y)
    p = apply_temperature(z, t)
    thr = choose_threshold(y, p, mode=sec.threshold_mode, target_fpr=sec.target_fpr)
    return w, t, thr


def cross_validate(
    inputs: dict[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    cfg: NexaraConfig,
    *,
    k: int,
    seed: int = 0,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    fold_names: list[str] | None = None,
    inner_folds: int | None = None,
) -> CVResult:
    """Grouped K-fold CV of every member, the ensemble and the baseline. Needs Ray initialised.

    ``folds`` replaces the grouped K-fold by given (train, held-out) index pairs (leave one dataset out:
    :func:`training.datasets.leave_one_dataset_out`); ``inner_folds`` overrides ``training.inner_folds``.
    """
    import ray

    sec = cfg.training
    if inner_folds is not None:
        sec = sec.model_copy(update={"inner_folds": inner_folds})
    members = sec.members
    t0 = time.perf_counter()
    for m in members:
        member_input(inputs, m)  # fail before any work when an input is missing
    x = inputs["appearance"]
    x_ref = ray.put({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()})
    task = ray.remote(num_cpus=sec.member_num_cpus)(_fit_and_score)
    if folds is None:
        folds = grouped_folds(y, groups, k, seed)
    k = len(folds)
    nested = sec.inner_folds >= 2

    def run_all(jobs: dict[Any, _Job], stage: str) -> dict[Any, dict[str, Any]]:
        pending = {task.remote(x_ref, y, *args, sec.torch_threads): key for key, args in jobs.items()}
        out: dict[Any, dict[str, Any]] = {}
        remaining = list(pending)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            key = pending[done[0]]
            try:
                out[key] = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                raise TrainingError(
                    f"member {key[-1]} failed on fold {key[0]} ({stage}): {exc.cause if hasattr(exc, 'cause') else exc}"
                ) from None
            log.info("cv %s: fold %s member %s done (%d/%d)", stage, key[0], key[-1], len(out), len(pending))
        return out

    # stage 1: predictions on each fold's training clips that no member saw while fitting
    jobs: dict[Any, _Job] = {}
    val_sets: list[np.ndarray] = []
    for fi, (tr, te) in enumerate(folds):
        if nested:
            if len(np.unique(groups[tr])) < sec.inner_folds:
                raise TrainingError(
                    f"fold {fi}: {sec.inner_folds} inner folds need as many sources in the fold's training part, "
                    f"it has {len(np.unique(groups[tr]))}; lower training.inner_folds (0 = one inner split)"
                )
            inner = [(tr[a], tr[b]) for a, b in grouped_folds(y[tr], groups[tr], sec.inner_folds, seed + fi)]
            val_sets.append(np.concatenate([b for _, b in inner]))
            for ii, (fit_idx, val_idx) in enumerate(inner):
                for m in members:
                    jobs[(fi, ii, m.name)] = (fit_idx, val_idx, te, m, sec.train)
        else:
            fit_idx, val_idx = inner_split(y, groups, tr, sec.inner_val_frac, seed + fi)
            val_sets.append(val_idx)
            for m in members:
                jobs[(fi, 0, m.name)] = (fit_idx, val_idx, te, m, sec.train)
    first = run_all(jobs, "inner" if nested else "fit")
    n_inner = sec.inner_folds if nested else 1
    inner_best = {
        (fi, m.name): [int(first[(fi, ii, m.name)]["best_epoch"]) for ii in range(n_inner)]
        for fi in range(len(folds))
        for m in members
    }
    best_epochs = {m.name: [int(np.median(inner_best[(fi, m.name)])) for fi in range(len(folds))] for m in members}
    # stage 2 (nested): every member refit on all of the fold's training clips for its median inner best
    # epoch, without early stopping - what train_final does on all clips for the shipped model
    if nested:
        jobs = {}
        for fi, (tr, te) in enumerate(folds):
            for m in members:
                member, train_cfg = refit_settings(m, sec.train, refit_epochs(inner_best[(fi, m.name)]))
                jobs[(fi, m.name)] = (tr, tr, te, member, train_cfg)
        refits = run_all(jobs, "refit")

    n, m_count = len(y), len(members)
    oof_members = np.zeros((n, m_count))
    oof_ens = np.zeros(n)
    oof_base = np.zeros(n)
    thr_members = np.zeros((n, m_count))
    thr_ens = np.zeros(n)
    reports: dict[str, list[dict[str, Any]]] = {m.name: [] for m in members}
    reports["ensemble"], reports["baseline"] = [], []
    for fi, (tr, te) in enumerate(folds):
        val_idx = val_sets[fi]
        val_p = np.zeros((len(val_idx), m_count))
        te_p = np.zeros((len(te), m_count))
        for j, m in enumerate(members):
            val_p[:, j] = np.concatenate([sigmoid(first[(fi, ii, m.name)]["val_logits"]) for ii in range(n_inner)])
            score = refits[(fi, m.name)] if nested else first[(fi, 0, m.name)]
            te_p[:, j] = sigmoid(score["score_logits"])
        oof_members[te] = te_p
        for j, m in enumerate(members):
            thr_m = choose_threshold(y[val_idx], val_p[:, j], mode=sec.threshold_mode, target_fpr=sec.target_fpr)
            thr_members[te, j] = thr_m
            reports[m.name].append(classification_report(y[te], te_p[:, j], thr_m))
        w, t, thr = fit_calibration(val_p, y[val_idx], sec)
        ens = apply_temperature(logit(soft_vote(te_p, w)), t)
        oof_ens[te] = ens
        thr_ens[te] = thr
        reports["ensemble"].append(classification_report(y[te], ens, thr))
        base = _baseline_probs(x, y, tr, te)
        oof_base[te] = base
        reports["baseline"].append(classification_report(y[te], base, 0.5))
    summary = {name: aggregate_folds(r) for name, r in reports.items()}
    return CVResult(
        k=k,
        member_names=[m.name for m in members],
        fold_reports=reports,
        summary=summary,
        oof_member_probs=oof_members,
        oof_ensemble_probs=oof_ens,
        oof_baseline_probs=oof_base,
        best_epochs=best_epochs,
        folds=[te.tolist() for _, te in folds],
        wall_s=time.perf_counter() - t0,
        oof_member_thresholds=thr_members,
        oof_ensemble_thresholds=thr_ens,
        fold_names=fold_names or [f"fold{i}" for i in range(k)],
        inner_folds=sec.inner_folds if nested else 0,
    )
