"""Training loop of one ensemble member (a temporal head over precomputed frame features).

:func:`train_member` is plain PyTorch so it runs the same in a unit test, on a laptop and inside a Ray
Train worker (pass ``on_epoch`` to forward each epoch's metrics to ``ray.train.report``). It implements:
focal loss with class weights and label smoothing, AdamW, per-step linear warm-up then cosine decay,
AMP on CUDA only, gradient clipping, early stopping that restores the best weights, per-class validation
accuracy watched every epoch, optional SWA, and feature-level augmentation (temporal shift, frame
dropout, noise, mixup); the loss, schedule and augmentation themselves are in :mod:`training.recipe`.
Given a seed the result is deterministic (on CPU).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from nexara.heads import TemporalHead, create_head
from nexara.metrics import classification_report
from nexara.training_config import MemberConfig, TrainConfig
from training.recipe import augment_batch, balanced_class_weights, focal_loss, make_scheduler, swa_start_epoch

__all__ = [
    "TrainResult",
    "predict_logits",
    "predict_proba",
    "refit_epochs",
    "refit_settings",
    "train_member",
]

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a trained member leaves behind. ``create_head(**head_config)`` + ``state_dict`` rebuild it."""

    state_dict: dict[str, Tensor]
    head_config: dict[str, Any]
    history: list[dict[str, Any]]
    best_epoch: int  # 1-based epoch whose weights were kept (the last epoch when the SWA average won)
    val_probs: np.ndarray
    val_logits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best_metric: float = float("nan")
    swa_used: bool = False
    swa_metrics: dict[str, Any] | None = None
    member: str = ""


# --- prediction ----------------------------------------------------------------------------------


@torch.no_grad()
def predict_logits(head: nn.Module, x: Any, batch_size: int = 256) -> np.ndarray:
    """Logits ``(N,)`` of ``head`` on features ``(N, T, D)`` in eval mode (the prior mode is restored)."""
    try:
        device = next(head.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    was_training = head.training
    head.eval()
    try:
        out = [head(xt[i : i + batch_size].to(device)).float().cpu() for i in range(0, xt.shape[0], batch_size)]
    finally:
        head.train(was_training)
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def predict_proba(head: nn.Module, x: Any, batch_size: int = 256) -> np.ndarray:
    """P(fight) ``(N,)``: sigmoid of :func:`predict_logits`."""
    z = predict_logits(head, x, batch_size=batch_size)
    return np.exp(-np.logaddexp(0.0, -z))


# --- training ------------------------------------------------------------------------------------


def _check_xy(name: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=np.float32)
    ya = np.asarray(y).astype(np.float32).reshape(-1)
    if xa.ndim != 3:
        raise ValueError(f"{name}: features must be (N, T, D), got shape {xa.shape}")
    if xa.shape[0] != ya.shape[0] or xa.shape[0] == 0:
        raise ValueError(f"{name}: {xa.shape[0]} windows but {ya.shape[0]} labels (need > 0)")
    if not np.isin(ya, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0 (no fight) or 1 (fight)")
    if not np.isfinite(xa).all():
        raise ValueError(f"{name}: features hold NaN or inf")
    return xa, ya


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    logits = predict_logits(model, x)
    loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(y.astype(np.float64))))
    rep = classification_report(y, np.exp(-np.logaddexp(0.0, -logits)), threshold=0.5)
    metrics = {
        "val_loss": loss,
        "val_roc_auc": rep["roc_auc"],
        "val_f1": 0.0 if math.isnan(rep["f1"]) else rep["f1"],
        "val_accuracy": rep["accuracy"],
        "val_acc_class0": rep["acc_class0"],
        "val_acc_class1": rep["acc_class1"],
        "val_class_gap": rep["class_gap"],
    }
    return metrics, logits


def _primary(metrics: dict[str, Any], metric: str) -> float:
    if metric == "loss" or (metric == "roc_auc" and math.isnan(metrics["val_roc_auc"])):
        return -metrics["val_loss"]
    return float(metrics["val_roc_auc"] if metric == "roc_auc" else metrics["val_f1"])


def _better(new: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """``(primary, val_loss)``: a higher primary wins; on a tie, a clearly lower val loss."""
    if best is None:
        return True
    return new[0] > best[0] + 1e-6 or (new[0] >= best[0] - 1e-6 and new[1] < best[1] - 1e-4)


def _watch_class_gap(member: str, epoch: int, m: dict[str, Any], cfg: TrainConfig, in_warmup: bool) -> None:
    gap = m["val_class_gap"]
    if in_warmup or math.isnan(gap):
        return
    accs = (m["val_acc_class0"], m["val_acc_class1"], gap)
    if gap > cfg.class_gap_alarm:
        log.error(
            "member %s epoch %d: CLASS ACCURACY GAP %.2f above alarm %.2f (no fight %.2f, fight %.2f): "
            "the model is collapsing onto one class; check class weights, labels and the split",
            member, epoch, gap, cfg.class_gap_alarm, accs[0], accs[1],
        )  # fmt: skip
    elif gap > cfg.class_gap_warn:
        log.warning(
            "member %s epoch %d: class accuracy gap %.2f above %.2f (no fight %.2f, fight %.2f)",
            member, epoch, gap, cfg.class_gap_warn, accs[0], accs[1],
        )  # fmt: skip


def train_member(
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    member: MemberConfig,
    cfg: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train one member on features ``(N, T, D)`` and labels ``(N,)`` (1 = fight), validating each epoch.

    The member's lr / epochs / seed overrides apply on top of ``cfg``. Returns the best weights (by
    ``cfg.early_stopping_metric`` on validation, or the SWA average when that is better) on CPU, the
    per-epoch history and the kept model's validation probabilities. The global torch RNG state of the
    caller is left untouched.
    """
    cfg = cfg.for_member(member)
    xtr, ytr = _check_xy("train", x_train, y_train)
    xva, yva = _check_xy("val", x_val, y_val)
    dev = _resolve_device(device)
    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(cfg.seed)
        return _train(xtr, ytr, xva, yva, member, cfg, dev, on_epoch)


def refit_epochs(best_epochs: Sequence[int]) -> int:
    """Epochs of a refit (no validation part, so no early stopping) from the best epochs of the runs
    that early-stopped the same member: their median, at least 3 so that one run peaking in its first
    epochs does not leave the refit barely trained. Used for the nested refit of each CV fold and for
    the final fits, so both train a member the same way."""
    return max(3, int(np.median(best_epochs)))


def refit_settings(member: MemberConfig, train: TrainConfig, epochs: int | None) -> tuple[MemberConfig, TrainConfig]:
    """A member's settings for a refit on all of its data for exactly ``epochs`` epochs (None: the
    training section's count)."""
    return member.model_copy(update={"epochs": epochs}), train.model_copy(update={"early_stopping_patience": None})


def _train(
    xtr: np.ndarray,
    ytr: np.ndarray,
    xva: np.ndarray,
    yva: np.ndarray,
    member: MemberConfig,
    cfg: TrainConfig,
    dev: torch.device,
    on_epoch: EpochCallback | None,
) -> TrainResult:
    n, _, d = xtr.shape
    model: TemporalHead = create_head(member.head, d, motion=member.motion, **member.head_kwargs).to(dev)
    if model.gradient_free:
        return _fit_gradient_free(model, xtr, ytr, xva, yva, member, cfg, on_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)

    if cfg.class_weights == "balanced":
        class_weights: list[float] | None = balanced_class_weights(ytr)
    else:
        class_weights = cfg.class_weights
    x_all, y_all = torch.from_numpy(xtr), torch.from_numpy(ytr)
    feature_std = x_all.reshape(-1, d).std(dim=0) if cfg.augment.noise_std else None

    steps_per_epoch = math.ceil(n / cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    swa_model = AveragedModel(model, use_buffers=True) if cfg.swa else None
    swa_start = swa_start_epoch(cfg) if cfg.swa else None

    history: list[dict[str, Any]] = []
    best_key: tuple[float, float] | None = None
    best_state: dict[str, Tensor] = {}
    best_epoch, bad_epochs = 0, 0
    log.info(
        "member %s: head=%s motion=%s train=%d (fight %d) val=%d epochs=%d device=%s amp=%s",
        member.name, member.head, member.motion, n, int(ytr.sum()), len(yva), cfg.epochs, dev, use_amp,
    )  # fmt: skip

    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        total_loss, seen = 0.0, 0
        lr_now = optimizer.param_groups[0]["lr"]
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb, yb = augment_batch(x_all[idx], y_all[idx], cfg.augment, feature_std=feature_std, gen=gen, np_rng=np_rng)
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                logits = model(xb)
            loss = focal_loss(
                logits,
                yb,
                alpha=cfg.focal_alpha,
                gamma=cfg.focal_gamma,
                class_weights=class_weights,
                label_smoothing=cfg.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)

        in_swa = swa_model is not None and swa_start is not None and epoch > swa_start
        if in_swa and swa_model is not None:
            swa_model.update_parameters(model)

        metrics, _ = _evaluate(model, xva, yva)
        record: dict[str, Any] = {
            "member": member.name,
            "epoch": epoch,
            "lr": lr_now,
            "train_loss": total_loss / max(1, seen),
            **metrics,
            "swa": in_swa,
            "epoch_s": time.perf_counter() - t0,
        }
        history.append(record)
        in_warmup = epoch <= cfg.warmup_epochs
        log.info(
            "member %s epoch %d/%d lr=%.2e train_loss=%.4f val_loss=%.4f auc=%.3f f1=%.3f "
            "acc(no fight)=%.2f acc(fight)=%.2f",
            member.name, epoch, cfg.epochs, lr_now, record["train_loss"], metrics["val_loss"],
            metrics["val_roc_auc"], metrics["val_f1"], metrics["val_acc_class0"], metrics["val_acc_class1"],
        )  # fmt: skip
        _watch_class_gap(member.name, epoch, metrics, cfg, in_warmup)
        if on_epoch is not None:
            on_epoch(dict(record))

        key = (_primary(metrics, cfg.early_stopping_metric), metrics["val_loss"])
        if _better(key, best_key):
            best_key, best_epoch, bad_epochs = key, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif not in_warmup:
            bad_epochs += 1
        # once averaging has begun, SWA needs the remaining epochs: no early stop
        if cfg.early_stopping_patience is not None and bad_epochs >= cfg.early_stopping_patience and not in_swa:
            log.info("member %s: early stop at epoch %d, best epoch %d", member.name, epoch, best_epoch)
            break

    assert best_key is not None  # at least one epoch ran
    swa_used, swa_metrics = False, None
    if swa_model is not None and int(swa_model.n_averaged) > 0:
        averaged = copy.deepcopy(swa_model.module)
        swa_metrics, _ = _evaluate(averaged, xva, yva)
        swa_key = (_primary(swa_metrics, cfg.early_stopping_metric), swa_metrics["val_loss"])
        log.info(
            "member %s: SWA over %d epochs: val_loss=%.4f auc=%.3f (best single epoch %d: %.4f)",
            member.name, int(swa_model.n_averaged), swa_metrics["val_loss"], swa_metrics["val_roc_auc"],
            best_epoch, best_key[0],
        )  # fmt: skip
        if _better(swa_key, best_key):
            swa_used, best_key, best_epoch = True, swa_key, history[-1]["epoch"]
            best_state = {k: v.detach().cpu().clone() for k, v in averaged.state_dict().items()}

    model.load_state_dict(best_state)
    _, val_logits = _evaluate(model, xva, yva)
    return TrainResult(
        state_dict=best_state,
        head_config=model.config,
        history=history,
        best_epoch=best_epoch,
        val_probs=np.exp(-np.logaddexp(0.0, -val_logits)),
        val_logits=val_logits,
        best_metric=_best_metric_value(best_key, cfg.early_stopping_metric),
        swa_used=swa_used,
        swa_metrics=swa_metrics,
        member=member.name,
    )


def _fit_gradient_free(
    model: TemporalHead,
    xtr: np.ndarray,
    ytr: np.ndarray,
    xva: np.ndarray,
    yva: np.ndarray,
    member: MemberConfig,
    cfg: TrainConfig,
    on_epoch: EpochCallback | None,
) -> TrainResult:
    """A head fitted in one call (trees): one "epoch", the same history record and result as the loop.

    Of the optimisation settings only ``seed`` and ``class_weights`` apply ('balanced' and explicit
    weights are passed to the fit; losses, augmentation, epochs, early stopping and SWA do not apply).
    """
    t0 = time.perf_counter()
    if cfg.class_weights == "balanced":
        class_weight: Any = "balanced"
    elif cfg.class_weights is None:
        class_weight = None
    else:
        class_weight = {0: float(cfg.class_weights[0]), 1: float(cfg.class_weights[1])}
    log.info(
        "member %s: head=%s (fitted in one call) train=%d (fight %d) val=%d",
        member.name, member.head, len(ytr), int(ytr.sum()), len(yva),
    )  # fmt: skip
    model.fit(xtr, ytr.astype(np.int64), seed=cfg.seed, class_weight=class_weight)  # type: ignore[operator]
    model.eval()
    train_metrics, _ = _evaluate(model, xtr, ytr)
    metrics, val_logits = _evaluate(model, xva, yva)
    record: dict[str, Any] = {
        "member": member.name,
        "epoch": 1,
        "lr": 0.0,
        "train_loss": train_metrics["val_loss"],
        **metrics,
        "swa": False,
        "epoch_s": time.perf_counter() - t0,
    }
    log.info(
        "member %s fitted in %.1f s: train_loss=%.4f val_loss=%.4f auc=%.3f f1=%.3f acc(no fight)=%.2f acc(fight)=%.2f",
        member.name, record["epoch_s"], record["train_loss"], metrics["val_loss"], metrics["val_roc_auc"],
        metrics["val_f1"], metrics["val_acc_class0"], metrics["val_acc_class1"],
    )  # fmt: skip
    _watch_class_gap(member.name, 1, metrics, cfg, in_warmup=False)
    if on_epoch is not None:
        on_epoch(dict(record))
    return TrainResult(
        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        head_config=model.config,
        history=[record],
        best_epoch=1,
        val_probs=np.exp(-np.logaddexp(0.0, -val_logits)),
        val_logits=val_logits,
        best_metric=_best_metric_value(
            (_primary(metrics, cfg.early_stopping_metric), metrics["val_loss"]), cfg.early_stopping_metric
        ),
        member=member.name,
    )


def _best_metric_value(key: tuple[float, float], metric: str) -> float:
    return key[1] if metric == "loss" else key[0]
