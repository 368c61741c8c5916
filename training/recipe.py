"""The ingredients of the member training loop (:mod:`training.loop`): focal loss with class weights and
label smoothing, the per-step warm-up + cosine (+ SWA) learning-rate schedule, and feature-level
augmentation (temporal shift, frame dropout, noise, mixup). Plain functions of tensors and settings, so
each is tested on its own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nexara.training_config import AugmentConfig, TrainConfig

__all__ = [
    "augment_batch",
    "balanced_class_weights",
    "focal_loss",
    "lr_factor",
    "make_scheduler",
    "swa_start_epoch",
]


# --- loss ----------------------------------------------------------------------------------------


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float | None = None,
    gamma: float = 0.0,
    class_weights: Sequence[float] | Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Binary focal loss on logits: ``alpha_t * w_y * (1 - p_t)^gamma * BCE``.

    ``targets`` may be soft (mixup). Label smoothing moves them to ``y * (1 - s) + s / 2`` before the BCE;
    ``alpha`` (weight of class 1, ``1 - alpha`` for class 0) and ``class_weights`` ``[w0, w1]`` are
    interpolated by the unsmoothed target. ``gamma=0, alpha=None`` without weights is plain BCE.
    """
    logits = logits.float()
    y = targets.to(logits.dtype)
    t = y * (1 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else y
    loss = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    if gamma:
        p = torch.sigmoid(logits)
        p_t = p * t + (1 - p) * (1 - t)
        loss = loss * (1 - p_t).clamp_min(0).pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    if class_weights is not None:
        w = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        loss = loss * (w[1] * y + w[0] * (1 - y))
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def balanced_class_weights(y: np.ndarray) -> list[float]:
    """``N / (2 * n_c)`` per class (sklearn's 'balanced'); ``[1, 1]`` when a class is absent."""
    y = np.asarray(y)
    counts = [int(np.sum(y == k)) for k in (0, 1)]
    if 0 in counts:
        return [1.0, 1.0]
    return [float(y.size / (2 * c)) for c in counts]


# --- schedule ------------------------------------------------------------------------------------


def lr_factor(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int,
    min_lr_frac: float = 0.0,
    swa_start_step: int | None = None,
    swa_lr_frac: float = 0.5,
) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps``, then cosine from 1 down to ``min_lr_frac`` at
    ``total_steps``. With SWA the cosine instead ends at ``swa_lr_frac`` at ``swa_start_step`` and
    stays there (the constant SWA learning rate).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    end, floor = total_steps, min_lr_frac
    if swa_start_step is not None:
        if step >= swa_start_step:
            return swa_lr_frac
        end, floor = swa_start_step, swa_lr_frac
    progress = min(1.0, (step - warmup_steps) / max(1, end - warmup_steps))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR implementing :func:`lr_factor` for ``cfg``; call ``.step()`` after every batch."""
    total = cfg.epochs * steps_per_epoch
    swa_start = swa_start_epoch(cfg) * steps_per_epoch if cfg.swa else None
    factor = functools.partial(
        lr_factor,
        total_steps=total,
        warmup_steps=cfg.warmup_epochs * steps_per_epoch,
        min_lr_frac=cfg.min_lr_frac,
        swa_start_step=swa_start,
        swa_lr_frac=cfg.swa_lr_frac,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def swa_start_epoch(cfg: TrainConfig) -> int:
    return max(1, int(cfg.swa_start_frac * cfg.epochs))


# --- augmentation --------------------------------------------------------------------------------


def augment_batch(
    x: Tensor,
    y: Tensor,
    aug: AugmentConfig,
    *,
    feature_std: Tensor | None,
    gen: torch.Generator,
    np_rng: np.random.Generator,
) -> tuple[Tensor, Tensor]:
    """Feature-level augmentation of a CPU batch ``(B, T, D)``, ``(B,)``; returns new tensors."""
    b, t, _ = x.shape
    frames = torch.arange(t).expand(b, t)
    if aug.max_shift and t > 1:
        shift = torch.randint(-aug.max_shift, aug.max_shift + 1, (b, 1), generator=gen)
        idx = (frames - shift).clamp(0, t - 1)  # edges repeat rather than wrap around
        x = x[torch.arange(b)[:, None], idx]
    if aug.temporal_dropout and t > 1:
        drop = torch.rand(b, t, generator=gen) < aug.temporal_dropout
        if aug.temporal_dropout_mode == "zero":
            x = x * (~drop).unsqueeze(-1).to(x.dtype)
        else:
            src = torch.where(drop, torch.full_like(frames, -1), frames).cummax(dim=1).values.clamp_min(0)
            x = x[torch.arange(b)[:, None], src]
    if aug.noise_std and feature_std is not None:
        x = x + torch.randn(x.shape, generator=gen) * (aug.noise_std * feature_std)
    if aug.mixup_alpha and b > 1:
        lam = float(np_rng.beta(aug.mixup_alpha, aug.mixup_alpha))
        perm = torch.randperm(b, generator=gen)
        x = lam * x + (1 - lam) * x[perm]
        y = lam * y + (1 - lam) * y[perm]
    return x, y
