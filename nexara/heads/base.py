"""What every temporal head shares: the base class, the per-frame input stage and the motion stream."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FrameInput", "TemporalHead", "frame_differences"]


class FrameInput(nn.Module):
    """Input stage shared by every head: per-frame LayerNorm of the features, plus the motion stream.

    Output: ``(B, T, out_dim)`` with ``out_dim = D`` or ``2 * D`` when ``motion`` is on.
    """

    def __init__(self, input_dim: int, motion: bool) -> None:
        super().__init__()
        self.motion = motion
        self.norm = nn.LayerNorm(input_dim)
        self.motion_norm = nn.LayerNorm(input_dim) if motion else None
        self.out_dim = input_dim * (2 if motion else 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected features of shape (B, T, D), got {tuple(x.shape)}")
        app = self.norm(x)
        if self.motion_norm is None:
            return app
        return torch.cat([app, self.motion_norm(frame_differences(x))], dim=-1)


def frame_differences(x: Tensor) -> Tensor:
    """``x[:, t] - x[:, t - 1]``, zero for the first frame: ``(B, T, D)`` -> ``(B, T, D)``."""
    return F.pad(x[:, 1:] - x[:, :-1], (0, 0, 1, 0))


class TemporalHead(nn.Module):
    """Base class: ``forward((B, T, D) float) -> (B,) logits``; ``config`` rebuilds it."""

    head_name: str = ""
    #: True for heads fitted in one call (``fit(x, y, seed=..., class_weight=...)``) instead of by gradient steps.
    gradient_free: bool = False
    _config: dict[str, Any]

    def __init__(self, input_dim: int, *, motion: bool = False) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.motion = motion
        self.frames = self._frame_input(input_dim, motion)
        self.frame_dim = input_dim * (2 if motion else 1)  # width of what self.frames returns
        self._config = {"name": self.head_name, "input_dim": input_dim, "motion": motion, "kwargs": {}}

    def _frame_input(self, input_dim: int, motion: bool) -> nn.Module:
        return FrameInput(input_dim, motion)

    @property
    def config(self) -> dict[str, Any]:
        """``{"name", "input_dim", "motion", "kwargs"}``: ``create_head(**config)`` rebuilds this head."""
        return copy.deepcopy(self._config)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.frames(x)).squeeze(-1)

    def score(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``(B, T, frame_dim)`` -> ``(B, 1)`` logits."""
        raise NotImplementedError
