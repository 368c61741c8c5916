"""Classification metrics, calibration, thresholds and ensemble voting for fight / no-fight scores.

Pure numpy (and scikit-learn for the ranking metrics): no torch, no Ray, usable in training, evaluation
and serving alike. Convention everywhere: label 1 = fight, 0 = no fight, ``prob`` = P(fight), and the
decision is ``prob >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from nexara.config.base import CONFIDENCE_TIERS

__all__ = [
    "DEFAULT_TIERS",
    "aggregate_folds",
    "apply_temperature",
    "brier_score",
    "choose_threshold",
    "classification_report",
    "confidence_tier",
    "expected_calibration_error",
    "fit_ensemble_weights",
    "fit_temperature",
    "k_of_n_vote",
    "logit",
    "majority_vote",
    "sigmoid",
    "soft_vote",
    "vote_counts",
]

_EPS = 1e-7
DEFAULT_TIERS: Mapping[str, float] = CONFIDENCE_TIERS  # one home: nexara.config.base


def _as_1d(name: str, a: Any, dtype: Any = np.float64) -> np.ndarray:
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _labels_probs(y_true: Any, prob: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _as_1d("y_true", y_true)
    p = _as_1d("prob", prob)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob differ in length: {y.shape[0]} vs {p.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 (no fight) and 1 (fight)")
    if not np.isfinite(p).all():
        raise ValueError("prob holds NaN or inf")
    return y.astype(np.int64), p


def sigmoid(z: Any) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def logit(p: Any, eps: float = _EPS) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def _div(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def expected_calibration_error(y_true: Any, prob: Any, n_bins: int = 10) -> float:
    """ECE of P(fight): ``n_bins`` equal-width bins over [0, 1]; sum over bins of
    (bin share) * |mean label - mean prob|. 0 = perfectly calibrated."""
    y, p = _labels_probs(y_true, prob)
    if y.size == 0:
        return float("nan")
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(ece)


def brier_score(y_true: Any, prob: Any) -> float:
    y, p = _labels_probs(y_true, prob)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def classification_report(y_true: Any, prob: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of P(fight) scores ``prob`` against labels at a decision threshold.

    Keys: n, n_pos, n_neg, threshold, accuracy, precision, recall, f1, fpr, specificity, roc_auc,
    pr_auc (average precision), confusion ``[[tn, fp], [fn, tp]]``, per_class_accuracy
    ``[acc_no_fight, acc_fight]`` (= specificity, recall), acc_class0, acc_class1, class_gap, ece (10 bins),
    brier. Undefined values (a class absent, no positive prediction) are NaN, never an exception.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score  # 2 s to import: not on predict's path

    y, p = _labels_probs(y_true, prob)
    pred = (p >= threshold).astype(np.int64)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    n_pos, n_neg = tp + fn, tn + fp
    precision = _div(tp, tp + fp)
    recall = _div(tp, n_pos)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    both = n_pos > 0 and n_neg > 0
    acc0, acc1 = _div(tn, n_neg), recall
    return {
        "n": int(y.size),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "threshold": float(threshold),
        "accuracy": _div(tp + tn, y.size),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": _div(fp, n_neg),
        "specificity": acc0,
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if n_pos > 0 else float("nan"),
        "confusion": [[tn, fp], [fn, tp]],
        "per_class_accuracy": [acc0, acc1],
        "acc_class0": acc0,
        "acc_class1": acc1,
        "class_gap": abs(acc1 - acc0) if both else float("nan"),
        "ece": expected_calibration_error(y, p) if y.size else float("nan"),
        "brier": brier_score(y, p) if y.size else float("nan"),
    }


def choose_threshold(
    y: Any,
    prob: Any,
    *,
    mode: Literal["max_f1", "balanced", "fpr"] = "max_f1",
    target_fpr: float = 0.05,
) -> float:
    """Pick a decision threshold (decision: ``prob >= threshold``) on held-out scores.

    ``max_f1``: the threshold with the best F1 (ties: the higher threshold, i.e. fewer alarms).
    ``balanced``: the threshold with the best balanced accuracy (Youden's J = recall - false-positive rate;
    ties: the higher threshold). Unlike F1 it weighs both classes alike, so it does not drift low when the
    validation rows are mostly of one kind (many windows of a few long clips).
    ``fpr``: the lowest threshold whose false-positive rate on ``y == 0`` is <= ``target_fpr``,
    i.e. the best recall the FPR budget allows.
    Either way the threshold sits midway in the gap between two adjacent distinct scores, so it
    reproduces the decisions on these scores while leaving a margin on both sides.
    """
    yy, p = _labels_probs(y, prob)
    if p.size == 0:
        raise ValueError("choose_threshold needs at least one score")
    uniq = np.unique(p)  # ascending

    def just_below(v: float) -> float:
        i = int(np.searchsorted(uniq, v))
        return float((uniq[i - 1] + v) / 2) if i > 0 else float(v)

    def just_above(v: float) -> float:
        i = int(np.searchsorted(uniq, v, side="right"))
        return float((uniq[i] + v) / 2) if i < uniq.size else float(np.nextafter(v, np.inf))

    if mode == "max_f1":
        n_pos = int(yy.sum())
        if n_pos == 0:
            raise ValueError("max_f1 threshold needs at least one fight (label 1)")
        order = np.argsort(-p, kind="stable")
        ps, ys = p[order], yy[order]
        tp = np.cumsum(ys)
        fp = np.cumsum(1 - ys)
        last = np.r_[ps[1:] != ps[:-1], True]  # threshold = ps[i] predicts positives 0..i (all ties)
        tp, fp, cand = tp[last], fp[last], ps[last]
        f1 = 2 * tp / (tp + n_pos + fp)
        best = int(np.flatnonzero(f1 >= f1.max() - 1e-12)[0])  # highest threshold among the best
        return just_below(float(cand[best]))
    if mode == "balanced":
        n_pos, n_neg = int(yy.sum()), int((1 - yy).sum())
        if n_pos == 0 or n_neg == 0:
            raise ValueError("balanced threshold needs both classes (fight and no fight)")
        order = np.argsort(-p, kind="stable")
        ps, ys = p[order], yy[order]
        last = np.r_[ps[1:] != ps[:-1], True]
        tpr, fpr, cand = (np.cumsum(ys) / n_pos)[last], (np.cumsum(1 - ys) / n_neg)[last], ps[last]
        j = tpr - fpr
        best = int(np.flatnonzero(j >= j.max() - 1e-12)[0])
        return just_below(float(cand[best]))
    if mode == "fpr":
        if not 0 <= target_fpr <= 1:
            raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
        neg = np.sort(p[yy == 0])[::-1]
        if neg.size == 0:
            return float(uniq[0])
        allowed = math.floor(target_fpr * neg.size + 1e-9)
        if allowed >= neg.size:
            return float(uniq[0])
        # every negative scoring >= threshold is a false positive: stay above the (allowed+1)-th highest
        return just_above(float(neg[allowed]))
    raise ValueError(f"unknown threshold mode {mode!r}; use 'max_f1', 'balanced' or 'fpr'")


def fit_temperature(logits: Any, y: Any, *, t_min: float = 0.05, t_max: float = 20.0) -> float:
    """Temperature T minimising the NLL of ``sigmoid(logits / T)`` on held-out data, T in [t_min, t_max].

    The NLL is convex in ``1 / T`` (a one-coefficient logistic regression), so a golden-section search
    over ``1 / T`` finds the optimum exactly.
    """
    z, yy = _as_1d("logits", logits), _as_1d("y", y)
    if z.shape != yy.shape or z.size == 0:
        raise ValueError("logits and y must be non-empty and of equal length")
    if not np.isfinite(z).all():
        raise ValueError("logits hold NaN or inf")

    def nll(beta: float) -> float:
        s = beta * z
        return float(np.mean(np.logaddexp(0.0, s) - yy * s))

    lo, hi = 1.0 / t_max, 1.0 / t_min
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(200):
        if b - a < 1e-10:
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(d)
    beta = (a + b) / 2
    # the bounds themselves may be the optimum
    beta = min((lo, beta, hi), key=nll)
    return float(min(max(1.0 / beta, t_min), t_max))


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Calibrated P(fight) = ``sigmoid(logits / temperature)``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return sigmoid(np.asarray(logits, dtype=np.float64) / temperature)


def _member_matrix(member_probs: Any) -> np.ndarray:
    p = np.asarray(member_probs, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"member_probs must be (N, M) or (M,), got shape {np.shape(member_probs)}")
    return p


def fit_ensemble_weights(
    member_probs: Any,
    y: Any,
    *,
    shrinkage: float = 0.1,
    max_iter: int = 2000,
) -> np.ndarray:
    """Soft-vote weights ``(M,)``, non-negative, summing to 1, maximising the log-likelihood of
    ``member_probs @ w`` on out-of-fold (validation) scores.

    The objective is convex on the simplex; it is minimised by exponentiated-gradient (mirror) descent
    with backtracking. The result is then shrunk toward uniform, ``(1 - shrinkage) * w + shrinkage / M``,
    so a few hundred clips cannot zero out a member on noise.
    """
    p = np.clip(_member_matrix(member_probs), _EPS, 1 - _EPS)
    yy = _as_1d("y", y)
    if yy.shape[0] != p.shape[0]:
        raise ValueError(f"member_probs has {p.shape[0]} rows, y has {yy.shape[0]}")
    if not 0 <= shrinkage <= 1:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    m = p.shape[1]
    w = np.full(m, 1.0 / m)
    if m == 1:
        return w

    def loss(w: np.ndarray) -> float:
        q = np.clip(p @ w, _EPS, 1 - _EPS)
        return float(-np.mean(yy * np.log(q) + (1 - yy) * np.log1p(-q)))

    def grad(w: np.ndarray) -> np.ndarray:
        q = np.clip(p @ w, _EPS, 1 - _EPS)
        dq = -(yy / q - (1 - yy) / (1 - q)) / yy.size
        return p.T @ dq

    f, step = loss(w), 1.0
    for _ in range(max_iter):
        g = grad(w)
        while True:
            cand = w * np.exp(-step * (g - g.max()))
            cand /= cand.sum()
            fc = loss(cand)
            if fc <= f or step < 1e-8:
                break
            step /= 2
        if f - fc < 1e-12:
            w = cand if fc <= f else w
            break
        w, f, step = cand, fc, step * 1.5
    w = (1 - shrinkage) * w + shrinkage / m
    return w / w.sum()


def soft_vote(member_probs: Any, weights: Any = None) -> np.ndarray:
    """Weighted mean of member P(fight): ``(N, M)`` -> ``(N,)``; uniform weights by default."""
    p = _member_matrix(member_probs)
    if weights is None:
        return p.mean(axis=1)
    w = _as_1d("weights", weights)
    if w.shape[0] != p.shape[1] or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {p.shape[1]} non-negative numbers with a positive sum")
    return p @ (w / w.sum())


def vote_counts(member_probs: Any, thresholds: Any = 0.5) -> np.ndarray:
    """How many members vote fight (``prob >= own threshold``): ``(N, M)`` -> ``(N,)`` ints."""
    p = _member_matrix(member_probs)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (p.shape[1],))
    return (p >= t).sum(axis=1)


def majority_vote(member_probs: Any, thresholds: Any = 0.5) -> np.ndarray:
    """Fight when a strict majority of members (more than M / 2) vote fight: ``(N,)`` bools."""
    m = _member_matrix(member_probs).shape[1]
    return vote_counts(member_probs, thresholds) * 2 > m


def k_of_n_vote(member_probs: Any, thresholds: Any = 0.5, k: int = 1) -> np.ndarray:
    """Fight when at least ``k`` of the M members vote fight: ``(N,)`` bools."""
    m = _member_matrix(member_probs).shape[1]
    if not 1 <= k <= m:
        raise ValueError(f"k must be in 1..{m}, got {k}")
    return vote_counts(member_probs, thresholds) >= k


def confidence_tier(
    prob: Any,
    threshold: float = 0.5,
    tiers: Mapping[str, float] = DEFAULT_TIERS,
    *,
    low: str = "LOW",
) -> Any:
    """Confidence tier of a (calibrated) P(fight) given the decision threshold.

    Rule: the confidence of a decision is P(decided class): ``prob`` when ``prob >= threshold`` (fight),
    else ``1 - prob``. The tier is the highest-valued tier whose value the confidence reaches, else
    ``low``. With the defaults: HIGH when prob >= 0.85 (fight) or prob <= 0.15 (no fight), MEDIUM when
    prob >= 0.65 or <= 0.35, LOW otherwise; a fight decided just above a low threshold is LOW.
    A scalar gives a str, an array an array of str.
    """
    if any(not 0 < v <= 1 for v in tiers.values()):
        raise ValueError(f"tier values must be in (0, 1], got {dict(tiers)}")
    ordered = sorted(tiers.items(), key=lambda kv: -kv[1])
    p = np.asarray(prob, dtype=np.float64)
    conf = np.where(p >= threshold, p, 1 - p)
    out = np.full(p.shape, low, dtype=object)
    for name, value in reversed(ordered):  # lowest first, so higher tiers overwrite
        out[conf >= value] = name
    return str(out.item()) if p.ndim == 0 else out.astype(str)


def aggregate_folds(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± std (ddof=1; 0 for one fold) of every scalar metric over cross-validation folds.

    Returns ``{"n_folds": k, "metrics": {name: {"mean", "std", "values"}}, "confusion": summed matrix,
    "per_class_accuracy": {"mean": [..], "std": [..]}}``; NaN fold values are skipped (``nanmean``).
    """
    if not reports:
        raise ValueError("aggregate_folds needs at least one report")
    metrics: dict[str, dict[str, Any]] = {}
    for key, first in reports[0].items():
        if isinstance(first, bool) or not isinstance(first, (int, float, np.integer, np.floating)):
            continue
        if key in ("n", "n_pos", "n_neg") or not all(key in r for r in reports):
            continue
        vals = np.array([float(r[key]) for r in reports])
        metrics[key] = {**_mean_std(vals), "values": vals.tolist()}
    out: dict[str, Any] = {"n_folds": len(reports), "metrics": metrics}
    out["n"] = int(sum(int(r.get("n", 0)) for r in reports))
    if all("confusion" in r for r in reports):
        out["confusion"] = np.sum([np.asarray(r["confusion"]) for r in reports], axis=0).astype(int).tolist()
    if all("per_class_accuracy" in r for r in reports):
        pca = np.array([r["per_class_accuracy"] for r in reports], dtype=np.float64)
        stats = [_mean_std(pca[:, j]) for j in range(pca.shape[1])]
        out["per_class_accuracy"] = {"mean": [s["mean"] for s in stats], "std": [s["std"] for s in stats]}
    return out


def _mean_std(vals: np.ndarray) -> dict[str, float]:
    ok = vals[np.isfinite(vals)]
    if ok.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(ok.mean()), "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0}
