"""train_member and its parts: loss, schedule, early stopping, class-gap watch, SWA, determinism;
plus the validation rules of the training config."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from nexara.heads import create_head
from nexara.training_config import AugmentConfig, MemberConfig, TrainConfig
from training.loop import predict_logits, predict_proba, train_member
from training.recipe import augment_batch, balanced_class_weights, focal_loss, lr_factor, make_scheduler

pytestmark = pytest.mark.unit

T, D = 16, 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # tiny models: thread hand-off costs more than it saves, and the CI box is shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fights(n: int, seed: int, *, pos_frac: float = 0.5, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Fights: a static scene plus an oscillation on a few features (amplitude ``signal``); else static."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < pos_frac).astype(np.int64)
    scene = rng.uniform(0, 2, (n, 1, D))
    x = scene + 0.3 * rng.normal(size=(n, T, D))
    t = np.arange(T)
    wave = np.sin(1.3 * t[None, :] + rng.uniform(0, 6.3, (n, 1)))
    x[:, :, :6] += (signal * y[:, None, None]) * wave[:, :, None]
    return x.astype(np.float32), y


def _fast_cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 15, "warmup_epochs": 1, "lr": 3e-3, "early_stopping_patience": None}
    return TrainConfig(**{**base, **kw})


# --- loss ---------------------------------------------------------------------------------------


def test_focal_gamma0_no_alpha_is_bce() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, generator=g) * 3
    y = (torch.rand(64, generator=g) > 0.5).float()
    torch.testing.assert_close(focal_loss(logits, y), F.binary_cross_entropy_with_logits(logits, y))
    torch.testing.assert_close(
        focal_loss(logits, y, label_smoothing=0.1),
        F.binary_cross_entropy_with_logits(logits, y * 0.9 + 0.05),
    )
    w = torch.where(y > 0, 3.0, 0.5)
    torch.testing.assert_close(
        focal_loss(logits, y, class_weights=[0.5, 3.0]), F.binary_cross_entropy_with_logits(logits, y, weight=w)
    )
    # alpha weights fights by alpha and the rest by 1 - alpha
    a = torch.where(y > 0, 0.25, 0.75)
    torch.testing.assert_close(
        focal_loss(logits, y, alpha=0.25), F.binary_cross_entropy_with_logits(logits, y, weight=a)
    )


def test_focal_downweights_easy_examples() -> None:
    easy, hard = torch.tensor([4.0]), torch.tensor([-1.0])
    one = torch.tensor([1.0])
    ratio_bce = float(focal_loss(easy, one) / focal_loss(hard, one))
    ratio_focal = float(focal_loss(easy, one, gamma=2.0) / focal_loss(hard, one, gamma=2.0))
    assert ratio_focal < ratio_bce / 10


def test_balanced_class_weights() -> None:
    assert balanced_class_weights(np.array([0, 0, 0, 1])) == pytest.approx([4 / 6, 2.0])
    assert balanced_class_weights(np.array([0, 0])) == pytest.approx([1.0, 1.0])


# --- schedule -----------------------------------------------------------------------------------


def test_warmup_cosine_values() -> None:
    kw = {"total_steps": 50, "warmup_steps": 10, "min_lr_frac": 0.0}
    assert lr_factor(0, **kw) == pytest.approx(0.1)
    assert lr_factor(4, **kw) == pytest.approx(0.5)
    assert lr_factor(9, **kw) == pytest.approx(1.0)
    assert lr_factor(10, **kw) == pytest.approx(1.0)
    assert lr_factor(30, **kw) == pytest.approx(0.5)  # half way through the cosine
    assert lr_factor(50, **kw) == pytest.approx(0.0)
    assert lr_factor(30, total_steps=50, warmup_steps=10, min_lr_frac=0.2) == pytest.approx(0.6)
    # SWA: cosine reaches the SWA lr at the SWA start, then stays there
    swa = {"total_steps": 50, "warmup_steps": 10, "swa_start_step": 30, "swa_lr_frac": 0.4}
    assert lr_factor(20, **swa) == pytest.approx(0.4 + 0.6 * 0.5)
    assert lr_factor(30, **swa) == pytest.approx(0.4)
    assert lr_factor(49, **swa) == pytest.approx(0.4)


def test_scheduler_drives_optimizer_per_step() -> None:
    cfg = TrainConfig(epochs=10, warmup_epochs=2, lr=0.01, min_lr_frac=0.0)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=cfg.lr)
    sched = make_scheduler(opt, cfg, steps_per_epoch=5)
    seen = []
    for _ in range(50):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(0.001)
    assert seen[9] == pytest.approx(0.01)
    assert seen[30] == pytest.approx(0.005)
    assert seen[49] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert max(seen) == pytest.approx(0.01)


# --- augmentation / prediction ----------------------------------------------------------------


def test_augment_batch_shapes_and_modes() -> None:
    x = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 8, 1).expand(2, 8, 3).contiguous()
    y = torch.tensor([0.0, 1.0])
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    hold = AugmentConfig(temporal_dropout=0.5, temporal_dropout_mode="hold", max_shift=0, noise_std=0.0)
    xa, ya = augment_batch(x, y, hold, feature_std=None, gen=gen, np_rng=rng)
    assert xa.shape == x.shape and torch.equal(ya, y)
    # held frames repeat an earlier frame: values never decrease along time and all come from x
    assert (xa[:, 1:, 0] >= xa[:, :-1, 0]).all()
    assert set(xa[0, :, 0].tolist()) <= set(x[0, :, 0].tolist())
    shift = AugmentConfig(temporal_dropout=0.0, max_shift=3, noise_std=0.0)
    xs, _ = augment_batch(x, y, shift, feature_std=None, gen=gen, np_rng=rng)
    assert set(xs[1, :, 0].tolist()) <= set(x[1, :, 0].tolist())
    mix = AugmentConfig(temporal_dropout=0.0, max_shift=0, noise_std=0.1, mixup_alpha=0.4)
    xm, ym = augment_batch(x, y, mix, feature_std=torch.ones(3), gen=gen, np_rng=rng)
    assert xm.shape == x.shape and ((ym >= 0) & (ym <= 1)).all()


def test_predict_proba_eval_mode_and_restores() -> None:
    head = create_head("attention", D, dropout=0.5)
    head.train()
    x = np.random.default_rng(0).normal(size=(7, T, D)).astype(np.float32)
    p1, p2 = predict_proba(head, x, batch_size=3), predict_proba(head, x)
    np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)  # dropout off
    assert head.training
    assert p1.shape == (7,) and ((p1 > 0) & (p1 < 1)).all()
    np.testing.assert_allclose(p1, 1 / (1 + np.exp(-predict_logits(head, x))), rtol=1e-6)


# --- training -----------------------------------------------------------------------------------


def test_train_member_learns_and_reports_every_epoch() -> None:
    xtr, ytr = _fights(192, 0)
    xva, yva = _fights(96, 1)
    member = MemberConfig(name="gru-motion", head="bigru", motion=True)
    seen: list[dict] = []
    res = train_member(xtr, ytr, xva, yva, member, _fast_cfg(), on_epoch=seen.append)
    assert roc_auc_score(yva, res.val_probs) > 0.9
    assert len(seen) == len(res.history) == 15
    assert [r["epoch"] for r in seen] == list(range(1, 16))
    assert {"train_loss", "val_loss", "val_roc_auc", "val_acc_class0", "val_acc_class1", "lr"} <= set(seen[0])
    assert seen[0]["member"] == "gru-motion"
    # the result rebuilds into the same model
    head = create_head(**res.head_config)
    head.load_state_dict(res.state_dict)
    np.testing.assert_allclose(predict_proba(head, xva), res.val_probs, rtol=1e-5, atol=1e-6)
    assert res.history[res.best_epoch - 1]["val_roc_auc"] == pytest.approx(res.best_metric)


def test_early_stopping_restores_best_epoch() -> None:
    # labels carry no signal: val loss bottoms out early and then rises as the head memorises noise
    rng = np.random.default_rng(5)
    xtr = rng.normal(size=(96, T, D)).astype(np.float32)
    ytr = rng.integers(0, 2, 96)
    xva = rng.normal(size=(64, T, D)).astype(np.float32)
    yva = rng.integers(0, 2, 64)
    cfg = TrainConfig(
        epochs=60,
        warmup_epochs=1,
        lr=1e-2,
        early_stopping_patience=4,
        early_stopping_metric="loss",
        augment=AugmentConfig(temporal_dropout=0, max_shift=0, noise_std=0),
    )
    member = MemberConfig(name="overfit", head="stats", head_kwargs={"hidden": 128, "dropout": 0.0})
    res = train_member(xtr, ytr, xva, yva, member, cfg)
    losses = [r["val_loss"] for r in res.history]
    assert len(res.history) < 60, "early stopping never fired"
    assert len(res.history) == res.best_epoch + 4
    assert res.best_epoch == int(np.argmin(losses)) + 1
    assert res.best_epoch < len(res.history)
    # the returned weights are the best epoch's, not the last epoch's
    kept = F.binary_cross_entropy_with_logits(torch.from_numpy(res.val_logits), torch.from_numpy(yva.astype(float)))
    assert float(kept) == pytest.approx(losses[res.best_epoch - 1], abs=1e-5)
    assert float(kept) < losses[-1]
    assert res.best_metric == pytest.approx(min(losses), abs=1e-6)


def test_class_gap_warning_and_alarm(caplog: pytest.LogCaptureFixture) -> None:
    # 10% fights in training, no class weights, a faint signal: the head learns to say "no fight"
    xtr, ytr = _fights(160, 2, pos_frac=0.1, signal=0.05)
    xva, yva = _fights(80, 3, signal=0.05)
    member = MemberConfig(name="biased", head="stats")
    plain = {"class_weights": None, "focal_gamma": 0.0, "label_smoothing": 0.0, "epochs": 6}
    with caplog.at_level(logging.INFO, logger="training.loop"):
        res = train_member(xtr, ytr, xva, yva, member, _fast_cfg(**plain, class_gap_warn=0.15, class_gap_alarm=1.0))
    assert res.history[-1]["val_class_gap"] > 0.15
    gap_records = [r for r in caplog.records if "class accuracy gap" in r.getMessage().lower()]
    assert gap_records and all(r.levelno == logging.WARNING for r in gap_records)
    assert all(r.levelno < logging.ERROR for r in caplog.records)
    # per-class accuracy is logged every epoch, warning or not
    per_epoch = [r for r in caplog.records if "acc(no fight)" in r.getMessage()]
    assert len(per_epoch) == len(res.history)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="training.loop"):
        train_member(xtr, ytr, xva, yva, member, _fast_cfg(**plain))
    assert any(r.levelno == logging.ERROR and "CLASS ACCURACY GAP" in r.getMessage() for r in caplog.records)


def test_balanced_weights_close_the_gap() -> None:
    xtr, ytr = _fights(160, 2, pos_frac=0.15)
    xva, yva = _fights(80, 3)
    res = train_member(xtr, ytr, xva, yva, MemberConfig(name="fair", head="stats"), _fast_cfg())
    assert res.history[res.best_epoch - 1]["val_class_gap"] < 0.25


def test_deterministic_given_seed() -> None:
    xtr, ytr = _fights(96, 4)
    xva, yva = _fights(48, 5)
    member = MemberConfig(name="det", head="conv1d", motion=True)
    cfg = _fast_cfg(epochs=4, augment=AugmentConfig(mixup_alpha=0.4))
    a = train_member(xtr, ytr, xva, yva, member, cfg)
    b = train_member(xtr, ytr, xva, yva, member, cfg)
    c = train_member(xtr, ytr, xva, yva, member.model_copy(update={"seed": 7}), cfg)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k])
    np.testing.assert_array_equal(a.val_probs, b.val_probs)
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in c.history]


def test_swa_path_runs() -> None:
    xtr, ytr = _fights(128, 6)
    xva, yva = _fights(64, 7)
    cfg = _fast_cfg(epochs=8, swa=True, swa_start_frac=0.5, early_stopping_patience=2)
    res = train_member(xtr, ytr, xva, yva, MemberConfig(name="swa", head="bilstm"), cfg)
    assert len(res.history) == 8  # early stopping waits for the averaging to finish
    assert [r["swa"] for r in res.history] == [False] * 4 + [True] * 4
    assert res.swa_metrics is not None and np.isfinite(res.swa_metrics["val_loss"])
    if res.swa_used:
        assert res.best_epoch == 8
    head = create_head(**res.head_config)
    head.load_state_dict(res.state_dict)
    np.testing.assert_allclose(predict_proba(head, xva), res.val_probs, rtol=1e-5, atol=1e-6)
    lrs = [r["lr"] for r in res.history]
    assert lrs[-1] == pytest.approx(cfg.lr * cfg.swa_lr_frac)


def test_member_overrides_apply() -> None:
    xtr, ytr = _fights(64, 8)
    member = MemberConfig(name="short", head="stats", epochs=3, lr=1e-4)
    res = train_member(xtr, ytr, xtr, ytr, member, _fast_cfg())
    assert len(res.history) == 3
    assert max(r["lr"] for r in res.history) <= 1e-4 + 1e-12


# --- config -------------------------------------------------------------------------------------


def test_train_config_rules() -> None:
    cfg = TrainConfig()
    assert cfg.focal_gamma >= 0 and cfg.warmup_epochs < cfg.epochs
    with pytest.raises(ValidationError, match="warmup_epochs"):
        TrainConfig(epochs=3, warmup_epochs=3)
    with pytest.raises(ValidationError, match="class_gap_alarm"):
        TrainConfig(class_gap_warn=0.3, class_gap_alarm=0.2)
    with pytest.raises(ValidationError):
        TrainConfig(swa_start_frac=1.0)
    with pytest.raises(ValidationError):
        TrainConfig(class_weights=[1.0])
    with pytest.raises(ValidationError, match="extra"):
        TrainConfig(epochz=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TrainConfig(augment={"temporal_dropout": 0.9})  # type: ignore[arg-type]
    assert TrainConfig(class_weights=[1.0, 2.5]).class_weights == [1.0, 2.5]
    assert TrainConfig(class_weights=None).class_weights is None
    for field in TrainConfig.model_fields.values():
        assert field.description
    with pytest.raises(ValidationError, match="warmup_epochs"):
        TrainConfig(warmup_epochs=5).for_member(MemberConfig(name="m", head="stats", epochs=4))


def test_member_config_rules() -> None:
    m = MemberConfig(name="hyb-1", head="hybrid", motion=True, head_kwargs={"hidden": 64})
    assert create_head(m.head, D, motion=m.motion, **m.head_kwargs).config["kwargs"]["hidden"] == 64
    with pytest.raises(ValidationError, match="registered heads"):
        MemberConfig(name="x", head="nope")
    with pytest.raises(ValidationError, match="does not accept"):
        MemberConfig(name="x", head="stats", head_kwargs={"layers": 3})
    with pytest.raises(ValidationError):
        MemberConfig(name="bad name!", head="stats")
    for field in MemberConfig.model_fields.values():
        assert field.description


def test_gradient_free_member_goes_through_train_member() -> None:
    """A tree member is fitted once by the same entry point (what CV tasks and Ray Train call)."""
    import numpy as np

    from nexara.heads import create_head
    from nexara.training_config import MemberConfig, TrainConfig
    from training.loop import predict_proba, train_member

    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 1, 10)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64)
    member = MemberConfig(name="trees", head="forest", input="motion", head_kwargs={"n_trees": 30})
    seen: list[dict] = []
    res = train_member(x[:70], y[:70], x[70:], y[70:], member, TrainConfig(epochs=5), on_epoch=seen.append)
    assert res.best_epoch == 1 and len(res.history) == 1 and seen[0]["epoch"] == 1
    assert res.history[0]["val_roc_auc"] > 0.9
    head = create_head(**res.head_config)
    head.load_state_dict(res.state_dict)
    np.testing.assert_allclose(predict_proba(head, x[70:]), res.val_probs, atol=1e-7)
    # same seed, same trees; another seed, other trees
    again = train_member(x[:70], y[:70], x[70:], y[70:], member, TrainConfig(epochs=5))
    other = train_member(x[:70], y[:70], x[70:], y[70:], member, TrainConfig(epochs=5, seed=1))
    assert torch.equal(again.state_dict["threshold"], res.state_dict["threshold"])
    assert res.state_dict["threshold"].shape != other.state_dict["threshold"].shape or not torch.equal(
        other.state_dict["threshold"], res.state_dict["threshold"]
    )


def test_refit_epochs_and_settings_are_shared_by_cv_and_final_fits() -> None:
    from training.loop import refit_epochs, refit_settings

    assert refit_epochs([1, 1]) == 3  # a gradient-free member (one "epoch") still gets the floor
    assert refit_epochs([5, 8, 9]) == 8
    assert refit_epochs([4, 7]) == 5  # int() of the median 5.5
    member, train = refit_settings(MemberConfig(name="m", head="stats"), TrainConfig(), 7)
    assert member.epochs == 7 and train.early_stopping_patience is None
