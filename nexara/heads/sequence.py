"""Heads that read the frame sequence in order: recurrent (BiLSTM, BiGRU), attention, hybrid and
temporal convolutions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nexara.errors import ModelError
from nexara.heads.base import TemporalHead
from nexara.heads.factory import register_head

__all__ = ["AttentionHead", "AttentionPool", "BiGRUHead", "BiLSTMHead", "Conv1DHead", "HybridHead"]


class AttentionPool(nn.Module):
    """Additive attention over time: ``(B, T, H)`` -> ``(B, H)``."""

    def __init__(self, dim: int, attn_dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1))

    def forward(self, h: Tensor) -> Tensor:
        w = torch.softmax(self.score(h).squeeze(-1).float(), dim=1).to(h.dtype)
        return torch.einsum("bt,bth->bh", w, h)


def _projection(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout * 0.5), nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout))


class _Recurrent(TemporalHead):
    rnn_cls: type[nn.LSTM] | type[nn.GRU] = nn.LSTM

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        proj_dim: int = 128,
        hidden: int = 64,
        num_layers: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        self.proj = _projection(self.frame_dim, proj_dim, dropout)
        self.rnn = self.rnn_cls(
            proj_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        # last state of each direction + mean over time: the mean keeps gradients flowing to every frame
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * hidden, 1))

    def score(self, h: Tensor) -> Tensor:
        seq, _ = self.rnn(self.proj(h))
        half = seq.shape[-1] // 2
        last = torch.cat([seq[:, -1, :half], seq[:, 0, half:]], dim=-1)
        return self.out(torch.cat([last, seq.mean(dim=1)], dim=-1))


@register_head("bilstm")
class BiLSTMHead(_Recurrent):
    """Projection -> bidirectional LSTM -> last states + mean over time -> logit."""

    rnn_cls = nn.LSTM


@register_head("bigru")
class BiGRUHead(_Recurrent):
    """Projection -> bidirectional GRU -> last states + mean over time -> logit."""

    rnn_cls = nn.GRU


@register_head("attention")
class AttentionHead(TemporalHead):
    """Projection with a learned position embedding -> attention pooling over time -> small MLP."""

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 128,
        attn_dim: int = 64,
        max_frames: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        self.proj = _projection(self.frame_dim, hidden, dropout)
        self.pos = nn.Parameter(torch.zeros(max_frames, hidden))
        self.pool = AttentionPool(hidden, attn_dim)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def score(self, h: Tensor) -> Tensor:
        t = h.shape[1]
        if t > self.pos.shape[0]:
            raise ValueError(f"attention head built for at most {self.pos.shape[0]} frames, got {t}")
        return self.out(self.pool(self.proj(h) + self.pos[:t]))


@register_head("hybrid")
class HybridHead(TemporalHead):
    """Feature compression (Linear -> LayerNorm -> GELU) -> residual BiLSTM stack -> attention pooling.

    Each BiLSTM layer has ``hidden // 2`` units per direction, so its output adds onto its input.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 128,
        num_layers: int = 2,
        attn_dim: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        if hidden % 2:
            raise ModelError(f"hybrid head: hidden must be even, got {hidden}")
        self.compress = nn.Sequential(
            nn.Dropout(dropout * 0.5),
            nn.Linear(self.frame_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.layers = nn.ModuleList(
            nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True) for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.drop = nn.Dropout(dropout)
        self.pool = AttentionPool(hidden, attn_dim)
        self.out = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden // 2, 1)
        )

    def score(self, h: Tensor) -> Tensor:
        z = self.compress(h)
        for lstm, norm in zip(self.layers, self.norms, strict=True):
            y, _ = lstm(z)
            z = norm(z + self.drop(y))
        return self.out(self.pool(z))


@register_head("conv1d")
class Conv1DHead(TemporalHead):
    """Projection -> residual dilated temporal convolutions -> mean + max pooling over time -> logit."""

    def __init__(
        self,
        input_dim: int,
        *,
        motion: bool = False,
        hidden: int = 96,
        num_layers: int = 3,
        kernel_size: int = 3,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(input_dim, motion=motion)
        if kernel_size % 2 == 0:
            raise ModelError(f"conv1d head: kernel_size must be odd, got {kernel_size}")
        self.proj = _projection(self.frame_dim, hidden, dropout)
        self.blocks = nn.ModuleList()
        for i in range(num_layers):
            dilation = 2**i
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(hidden, hidden, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation),
                    nn.GroupNorm(1, hidden),
                    nn.GELU(),
                    nn.Dropout(dropout),
                )
            )
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 1))

    def score(self, h: Tensor) -> Tensor:
        z = self.proj(h).transpose(1, 2)  # (B, H, T)
        for block in self.blocks:
            z = z + block(z)
        return self.out(torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=-1))
