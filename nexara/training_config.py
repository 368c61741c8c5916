"""Training settings for the temporal heads: one :class:`TrainConfig` for a run, one :class:`MemberConfig`
per ensemble member.

Defaults suit the setting the project trains in: a few hundred clips of ``16 x 1280`` frame features,
on CPU or one GPU. A member trains in seconds on two CPU cores with these defaults.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AugmentConfig", "MemberConfig", "TrainConfig", "head_arguments"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEADS_DIR = Path(__file__).resolve().parent / "heads"
_NOT_HEAD_ARGUMENTS = frozenset({"self", "input_dim", "motion"})


def _registered_name(cls: ast.ClassDef) -> str | None:
    for deco in cls.decorator_list:
        if isinstance(deco, ast.Call) and deco.args and isinstance(deco.args[0], ast.Constant):
            func = deco.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called == "register_head" and isinstance(deco.args[0].value, str):
                return deco.args[0].value
    return None


def _init_arguments(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> tuple[str, ...]:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            return tuple(a.arg for a in args if a.arg not in _NOT_HEAD_ARGUMENTS)
    for base in cls.bases:  # an inherited constructor (the recurrent heads share one)
        if isinstance(base, ast.Name) and base.id in classes:
            return _init_arguments(classes[base.id], classes)
    return ()


@functools.cache
def head_arguments() -> dict[str, tuple[str, ...]]:
    """Registered head name -> the keyword arguments its constructor accepts, read from the source of
    ``nexara/heads`` instead of importing it: the heads import torch, and validating a config (``nexara
    config validate``) must stay instant. ``tests/unit/test_training_config.py`` checks this equals what the
    imported registry says (``nexara.heads.head_defaults``)."""
    out: dict[str, tuple[str, ...]] = {}
    for path in sorted(_HEADS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        for cls in classes.values():
            name = _registered_name(cls)
            if name is not None:
                out[name] = _init_arguments(cls, classes)
    return dict(sorted(out.items()))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(_Model):
    """Feature-level augmentation, applied to training batches only."""

    temporal_dropout: float = Field(
        0.1, ge=0, le=0.5, description="Probability that a frame is dropped from a training window (0..0.5)."
    )
    temporal_dropout_mode: Literal["zero", "hold"] = Field(
        "hold",
        description="What a dropped frame becomes: 'zero' features, or 'hold' the previous frame (a stalled stream).",
    )
    max_shift: int = Field(
        2, ge=0, le=64, description="Largest random temporal shift in frames, edges repeated (0 = off, 0..64)."
    )
    noise_std: float = Field(
        0.05,
        ge=0,
        le=2,
        description="Gaussian noise std as a fraction of each feature's training-set std (0 = off, 0..2).",
    )
    mixup_alpha: float = Field(
        0.0, ge=0, le=10, description="Beta(alpha, alpha) mixup of windows and labels (0 = off, 0..10)."
    )


class MemberConfig(_Model):
    """One ensemble member: a registered head, its arguments, and optional per-member overrides."""

    name: str = Field(..., description="Member id, unique in the ensemble ([A-Za-z0-9_.-], 1..64 chars).")
    head: str = Field(..., description="Registered temporal head name (see nexara.heads.list_heads()).")
    motion: bool = Field(False, description="Add the frame-difference motion stream inside the head.")
    input: Literal["appearance", "motion"] = Field(
        "appearance",
        description="Which stored input the member reads: per-frame CNN features (T x D) or the clip's "
        "optical-flow motion statistics (1 x M).",
    )
    head_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Head constructor arguments (see nexara.heads.head_defaults(head))."
    )
    lr: float | None = Field(None, gt=0, le=1, description="Override of TrainConfig.lr for this member (0..1].")
    epochs: int | None = Field(None, ge=1, le=1000, description="Override of TrainConfig.epochs (1..1000).")
    seed: int | None = Field(None, ge=0, description="Override of TrainConfig.seed for this member (>= 0).")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"member name {v!r} must match {_NAME_RE.pattern}")
        return v

    @model_validator(mode="after")
    def _head_known(self) -> MemberConfig:
        heads = head_arguments()
        if self.head not in heads:
            raise ValueError(f"unknown head {self.head!r}; registered heads: {', '.join(heads)}")
        accepted = heads[self.head]
        unknown = sorted(set(self.head_kwargs) - set(accepted))
        if unknown:
            raise ValueError(
                f"head {self.head!r} does not accept {', '.join(unknown)}; accepted: {', '.join(accepted)}"
            )
        return self


class TrainConfig(_Model):
    """How one member is trained (see training/loop.py)."""

    epochs: int = Field(30, ge=1, le=1000, description="Maximum training epochs (1..1000).")
    batch_size: int = Field(32, ge=1, le=4096, description="Windows per optimiser step (1..4096).")
    lr: float = Field(1e-3, gt=0, le=1, description="Peak AdamW learning rate, reached after warm-up (0..1].")
    weight_decay: float = Field(1e-2, ge=0, le=1, description="AdamW decoupled weight decay (0..1).")
    warmup_epochs: int = Field(2, ge=0, le=100, description="Linear warm-up length in epochs (0..100, < epochs).")
    min_lr_frac: float = Field(0.02, ge=0, le=1, description="Cosine schedule floor as a fraction of lr (0..1).")
    focal_alpha: float | None = Field(
        None, gt=0, lt=1, description="Focal-loss weight of the fight class, (0..1); None = no alpha weighting."
    )
    focal_gamma: float = Field(1.0, ge=0, le=5, description="Focal-loss focusing exponent (0 = plain BCE, 0..5).")
    class_weights: Literal["balanced"] | list[float] | None = Field(
        "balanced",
        description="Per-class loss weights: 'balanced' (N / (2 * n_class) from the training labels), "
        "None, or [w_no_fight, w_fight] (each > 0).",
    )
    label_smoothing: float = Field(0.05, ge=0, lt=0.5, description="Targets become y * (1 - s) + s / 2 (0..0.5).")
    grad_clip: float | None = Field(
        1.0, gt=0, le=1000, description="Clip the global gradient norm to this value; None = no clipping."
    )
    early_stopping_patience: int | None = Field(
        8, ge=1, le=1000, description="Stop after this many epochs without improvement; None = never stop early."
    )
    early_stopping_metric: Literal["roc_auc", "f1", "loss"] = Field(
        "roc_auc", description="Validation metric that picks the best epoch (ties go to the lower val loss)."
    )
    swa: bool = Field(False, description="Stochastic weight averaging over the last part of training.")
    swa_start_frac: float = Field(
        0.75, gt=0, lt=1, description="SWA starts at this fraction of the epochs (0..1, exclusive)."
    )
    swa_lr_frac: float = Field(
        0.5, gt=0, le=1, description="Constant learning rate during SWA as a fraction of lr (0..1]."
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Feature-level augmentation.")  # type: ignore[arg-type]
    amp: bool = Field(True, description="Mixed precision (autocast + GradScaler); only ever active on CUDA.")
    seed: int = Field(0, ge=0, description="Seed of initialisation, shuffling, augmentation and dropout (>= 0).")
    class_gap_warn: float = Field(
        0.15, gt=0, le=1, description="Warn when |val accuracy(fight) - val accuracy(no fight)| exceeds this (0..1]."
    )
    class_gap_alarm: float = Field(
        0.25, gt=0, le=1, description="Log an error-level alarm when the class accuracy gap exceeds this (0..1]."
    )

    @field_validator("class_weights")
    @classmethod
    def _weights_ok(cls, v: Any) -> Any:
        if isinstance(v, list) and (len(v) != 2 or not all(w > 0 for w in v)):
            raise ValueError(f"class_weights must be 'balanced', None or two positive numbers, got {v}")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> TrainConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")
        if self.class_gap_alarm < self.class_gap_warn:
            raise ValueError(
                f"class_gap_alarm ({self.class_gap_alarm}) must be >= class_gap_warn ({self.class_gap_warn})"
            )
        if self.swa and int(self.swa_start_frac * self.epochs) < self.warmup_epochs:
            raise ValueError(
                f"SWA would start at epoch {int(self.swa_start_frac * self.epochs)}, inside the "
                f"{self.warmup_epochs}-epoch warm-up; raise swa_start_frac or epochs"
            )
        return self

    def for_member(self, member: MemberConfig) -> TrainConfig:
        """This config with the member's lr / epochs / seed overrides applied (and validated again)."""
        overrides = {k: getattr(member, k) for k in ("lr", "epochs", "seed") if getattr(member, k) is not None}
        if not overrides:
            return self
        return TrainConfig.model_validate({**self.model_dump(), **overrides})
