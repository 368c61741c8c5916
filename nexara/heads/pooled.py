"""Heads on statistics pooled over time: the statistics MLP and the linear / MLP probe for clip-level
vectors (the optical-flow motion statistics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nexara.heads.base import TemporalHead, frame_differences
from nexara.heads.factory import register_head

__all__ = ["ProbeHead", "StatsHead"]


@register_head("stats")
class StatsHead(TemporalHead):
    """Mean, std and mean |temporal difference| of each raw feature -> LayerNorm -> small MLP.

    The strong linear-probe baseline as a head: order-free except for the difference statistic. The
    statistics are taken on the raw features (the LayerNorm after them is the input normalisation);
    with ``motion`` the same three statistics of the frame differences are appended.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        d = 3 * input_dim * (2 if motion else 1)
        self.mlp = nn.Sequential(
            nn.LayerNorm(d),
            nn.Dropout(dropout),
            nn.Linear(d, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def _frame_input(self, input_dim: int, motion: bool) -> nn.Module:
        return nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected features of shape (B, T, D), got {tuple(x.shape)}")
        parts = _stats(x)
        if self.motion:
            parts += _stats(frame_differences(x)[:, 1:] if x.shape[1] > 1 else torch.zeros_like(x))
        return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)


def _stats(h: Tensor) -> list[Tensor]:
    var, mean = torch.var_mean(h, dim=1, unbiased=False)
    # sqrt(var + eps): torch.std has an infinite gradient on constant inputs
    std = torch.sqrt(var + 1e-6)
    mad = (h[:, 1:] - h[:, :-1]).abs().mean(dim=1) if h.shape[1] > 1 else torch.zeros_like(mean)
    return [mean, std, mad]


@register_head("probe")
class ProbeHead(TemporalHead):
    """A (regularised) linear probe on clip-level vectors, e.g. the optical-flow motion statistics.

    Input ``(B, T, D)`` is pooled over T into mean and std (clip vectors arrive as T = 1, std 0; with
    ``motion`` the mean |frame difference| is appended), standardised with statistics learnt during
    training (a BatchNorm without affine parameters, cumulative averages), then a linear layer —
    logistic regression on standardised features when ``hidden`` is 0, a one-hidden-layer MLP otherwise.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        d = input_dim * (3 if motion else 2)
        self.standardise = nn.BatchNorm1d(d, affine=False, momentum=None)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden > 0:
            layers += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)]
        else:
            layers += [nn.Linear(d, 1)]
        self.out = nn.Sequential(*layers)

    def _frame_input(self, input_dim: int, motion: bool) -> nn.Module:
        return nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected features of shape (B, T, D), got {tuple(x.shape)}")
        parts = [x.mean(dim=1), x.std(dim=1, unbiased=False)]
        if self.motion:
            parts.append(frame_differences(x).abs().mean(dim=1))
        z = torch.cat(parts, dim=-1)
        if self.training and z.shape[0] == 1:
            # BatchNorm cannot take a batch of one in training: use the running statistics
            z = F.batch_norm(z, self.standardise.running_mean, self.standardise.running_var, training=False)
        else:
            z = self.standardise(z)
        return self.out(z).squeeze(-1)
