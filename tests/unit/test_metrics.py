"""Metrics, calibration, thresholds and votes against sklearn and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from nexara.metrics import (
    aggregate_folds,
    apply_temperature,
    brier_score,
    choose_threshold,
    classification_report,
    confidence_tier,
    expected_calibration_error,
    fit_ensemble_weights,
    fit_temperature,
    k_of_n_vote,
    logit,
    majority_vote,
    sigmoid,
    soft_vote,
    vote_counts,
)

pytestmark = pytest.mark.unit

Y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.2, 0.05, 0.65, 0.5])


def test_report_matches_sklearn() -> None:
    rep = classification_report(Y, P, threshold=0.5)
    pred = (P >= 0.5).astype(int)
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(Y, pred))
    assert rep["precision"] == pytest.approx(skm.precision_score(Y, pred))
    assert rep["recall"] == pytest.approx(skm.recall_score(Y, pred))
    assert rep["f1"] == pytest.approx(skm.f1_score(Y, pred))
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, P))
    assert rep["pr_auc"] == pytest.approx(skm.average_precision_score(Y, P))
    assert rep["brier"] == pytest.approx(skm.brier_score_loss(Y, P))
    assert rep["confusion"] == skm.confusion_matrix(Y, pred).tolist()
    # tn=4 fp=1 fn=1 tp=4 (0.5 counts as fight: decision is prob >= threshold)
    assert rep["confusion"] == [[4, 1], [1, 4]]
    assert rep["fpr"] == pytest.approx(1 / 5)
    assert rep["per_class_accuracy"] == pytest.approx([4 / 5, 4 / 5])
    assert rep["class_gap"] == pytest.approx(0.0)
    assert (rep["n"], rep["n_pos"], rep["n_neg"]) == (10, 5, 5)


def test_report_threshold_and_single_class() -> None:
    rep = classification_report(Y, P, threshold=0.75)
    assert rep["confusion"] == [[4, 1], [4, 1]]
    assert rep["acc_class0"] == pytest.approx(0.8) and rep["acc_class1"] == pytest.approx(0.2)
    assert rep["class_gap"] == pytest.approx(0.6)
    one = classification_report([0, 0, 0], [0.1, 0.2, 0.9])
    assert math.isnan(one["roc_auc"]) and math.isnan(one["recall"]) and math.isnan(one["pr_auc"])
    assert one["fpr"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        classification_report([0, 2], [0.1, 0.2])


def test_ece_calibrated_small_overconfident_large() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    over = sigmoid(4 * logit(p))  # same ranking, pushed toward 0 and 1
    assert expected_calibration_error(y, over) > 0.1
    assert brier_score(y, over) > brier_score(y, p)


def test_fit_temperature_recovers_scale() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 20000)
    y = (rng.uniform(0, 1, z.size) < sigmoid(z)).astype(int)
    t = fit_temperature(2 * z, y)
    assert t == pytest.approx(2.0, rel=0.15)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.15)
    np.testing.assert_allclose(apply_temperature(2 * z, t), sigmoid(2 * z / t))
    # bounds hold even for absurd inputs
    assert 0.05 <= fit_temperature(100 * z, y) <= 20
    assert fit_temperature(np.zeros(4) + 1e-3, [0, 1, 0, 1]) == pytest.approx(20.0)


def test_threshold_at_target_fpr() -> None:
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(500), np.ones(200)].astype(int)
    p = np.r_[rng.beta(2, 5, 500), rng.beta(5, 2, 200)]
    for target in (0.0, 0.01, 0.05, 0.2):
        thr = choose_threshold(y, p, mode="fpr", target_fpr=target)
        rep = classification_report(y, p, thr)
        assert rep["fpr"] <= target + 1e-12
        # the lowest such threshold: one more negative would break the budget
        neg_above = np.sort(p[y == 0])[::-1]
        k = math.floor(target * 500 + 1e-9)
        assert thr > neg_above[k]
        assert (p[(p < thr)] <= neg_above[k]).all()


def test_threshold_max_f1() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.55, 0.8, 0.9])
    thr = choose_threshold(y, p)
    f1_at = classification_report(y, p, thr)["f1"]
    best = max(skm.f1_score(y, (p >= c).astype(int)) for c in p)
    assert f1_at == pytest.approx(best)
    assert 0.2 < thr <= 0.55  # midway below the weakest fight, above the next score
    assert thr == pytest.approx((0.2 + 0.55) / 2)
    with pytest.raises(ValueError, match="mode"):
        choose_threshold(y, p, mode="nope")  # type: ignore[arg-type]


def test_threshold_balanced_weighs_both_classes() -> None:
    # many easy fights and few no-fights: F1 drifts low (every no-fight alarms), balanced accuracy does not
    y = np.array([1] * 20 + [0] * 4)
    p = np.r_[np.linspace(0.3, 0.95, 20), [0.35, 0.4, 0.45, 0.2]]
    thr = choose_threshold(y, p, mode="balanced")
    rep = classification_report(y, p, thr)
    best = max(skm.balanced_accuracy_score(y, (p >= c).astype(int)) for c in p)
    assert skm.balanced_accuracy_score(y, (p >= thr).astype(int)) == pytest.approx(best)
    assert rep["fpr"] == 0.0 and thr == pytest.approx((0.45 + p[5]) / 2)  # above every no-fight
    # F1 counts no true negatives: it keeps every fight and alarms on 3 of the 4 no-fights
    assert classification_report(y, p, choose_threshold(y, p, mode="max_f1"))["fpr"] == 0.75
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.ones(3), np.array([0.2, 0.5, 0.9]), mode="balanced")


def test_ensemble_weights_favour_informative_member() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 230)
    good = np.clip(0.5 + 0.35 * (2 * y - 1) + rng.normal(0, 0.15, y.size), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, y.size)
    w = fit_ensemble_weights(np.c_[noise, good], y)
    assert w.shape == (2,)
    assert w.sum() == pytest.approx(1.0)
    assert (w >= 0).all()
    assert w[1] > 0.8 and w[0] > 0  # shrinkage keeps the noise member alive
    w0 = fit_ensemble_weights(np.c_[noise, good], y, shrinkage=0.0)
    assert w0[1] > w[1]
    assert fit_ensemble_weights(good[:, None], y) == pytest.approx([1.0])


def test_votes() -> None:
    probs = np.array(
        [
            [0.9, 0.8, 0.1],
            [0.6, 0.2, 0.3],
            [0.2, 0.1, 0.05],
            [0.7, 0.7, 0.7],
        ]
    )
    np.testing.assert_allclose(soft_vote(probs), probs.mean(axis=1))
    np.testing.assert_allclose(soft_vote(probs, [2, 1, 1]), probs @ np.array([0.5, 0.25, 0.25]))
    assert vote_counts(probs).tolist() == [2, 1, 0, 3]
    assert majority_vote(probs).tolist() == [True, False, False, True]
    assert majority_vote(probs, [0.5, 0.15, 0.5]).tolist() == [True, True, False, True]
    assert k_of_n_vote(probs, 0.5, k=1).tolist() == [True, True, False, True]
    assert k_of_n_vote(probs, 0.5, k=3).tolist() == [False, False, False, True]
    with pytest.raises(ValueError):
        k_of_n_vote(probs, 0.5, k=4)
    with pytest.raises(ValueError):
        soft_vote(probs, [1, -1, 1])
    # an even split is not a majority
    assert majority_vote(np.array([[0.9, 0.1]])).tolist() == [False]


def test_confidence_tiers() -> None:
    assert confidence_tier(0.9) == "HIGH"
    assert confidence_tier(0.1) == "HIGH"  # confidently no fight
    assert confidence_tier(0.7) == "MEDIUM"
    assert confidence_tier(0.3) == "MEDIUM"
    assert confidence_tier(0.55) == "LOW"
    # a fight decided just over a low threshold is not confident
    assert confidence_tier(0.35, threshold=0.3) == "LOW"
    assert confidence_tier(np.array([0.95, 0.5, 0.2])).tolist() == ["HIGH", "LOW", "MEDIUM"]
    assert confidence_tier(0.97, tiers={"CRITICAL": 0.95, "HIGH": 0.8}, low="NONE") == "CRITICAL"


def test_aggregate_folds() -> None:
    r1 = classification_report(Y, P, 0.5)
    r2 = classification_report(Y, P, 0.75)
    agg = aggregate_folds([r1, r2])
    assert agg["n_folds"] == 2 and agg["n"] == 20
    acc = agg["metrics"]["accuracy"]
    assert acc["mean"] == pytest.approx((0.8 + 0.5) / 2)
    assert acc["std"] == pytest.approx(np.std([0.8, 0.5], ddof=1))
    assert acc["values"] == pytest.approx([0.8, 0.5])
    assert agg["confusion"] == [[8, 2], [5, 5]]
    assert agg["per_class_accuracy"]["mean"] == pytest.approx([0.8, 0.5])
    assert "confusion" not in agg["metrics"] and "n" not in agg["metrics"]
    single = aggregate_folds([r1])
    assert single["metrics"]["f1"]["std"] == 0.0
