"""The module callers use: a frozen feature extractor that takes uint8 RGB frames and does its own
preprocessing (uint8 -> float on the device, resize, normalisation)."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nexara.backbones.spec import PreprocessSpec
from nexara.errors import InvalidFramesError, ModelError

__all__ = ["Backbone", "Frames", "InvalidFramesError"]

Frames = np.ndarray | torch.Tensor


class Backbone(nn.Module):
    """A frozen feature extractor: uint8 RGB frames (N, H, W, 3) in, float32 features (N, D) out.

    ``trunk`` maps a normalised NCHW float batch to pooled features; ``head`` (when present) maps
    those features to ImageNet logits. Preprocessing (uint8 -> float on the module's device,
    resize to ``spec.size_hw`` when needed, normalisation) happens inside :meth:`forward`, so callers
    ship uint8 frames, never float ones. The module is in eval mode after construction; in eval mode
    ``forward`` runs under ``torch.no_grad`` and, on CUDA, under autocast when ``autocast`` is set.
    """

    _scale: torch.Tensor
    _shift: torch.Tensor

    def __init__(
        self,
        name: str,
        trunk: nn.Module,
        head: nn.Module | None,
        spec: PreprocessSpec,
        feature_dim: int,
        *,
        weights_source: str | None = None,
        channels_last: bool = True,
        autocast: bool = True,
        amp_dtype: torch.dtype = torch.float16,
    ) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.head = head
        self.spec = spec
        self.spec_hash = spec.hash()
        self.feature_dim = int(feature_dim)
        self.weights_source = weights_source
        self.channels_last = channels_last
        self.autocast = autocast
        self.amp_dtype = amp_dtype
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        # x_norm = x * scale + shift; not persistent: they derive from the spec, not from training
        self.register_buffer("_scale", 1.0 / std, persistent=False)
        self.register_buffer("_shift", -mean / std, persistent=False)
        if channels_last:
            self.trunk.to(memory_format=torch.channels_last)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self._scale.device

    @property
    def has_classifier(self) -> bool:
        return self.head is not None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, spec_hash={self.spec_hash}"

    def preprocess(self, frames: Frames) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float32 (N, 3, h, w) on this module's device."""
        return self._normalise(_as_uint8_tensor(frames))

    def _normalise(self, t: torch.Tensor) -> torch.Tensor:
        # Transfer uint8 (4x smaller than float), convert on the device.
        t = t.to(self.device, non_blocking=True)
        # A permuted NHWC tensor *is* channels_last memory: no copy until .float().
        x = t.permute(0, 3, 1, 2).float()
        if tuple(x.shape[-2:]) != self.spec.size_hw:
            x = F.interpolate(x, size=self.spec.size_hw, mode="bilinear", align_corners=False, antialias=True)
        x = torch.addcmul(self._shift, x, self._scale)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)

    def _inference_context(self) -> contextlib.AbstractContextManager[Any]:
        stack = contextlib.ExitStack()
        if not self.training:
            stack.enter_context(torch.no_grad())
            if self.autocast and self.device.type == "cuda":
                stack.enter_context(torch.autocast("cuda", dtype=self.amp_dtype))
        return stack

    def forward(self, frames: Frames) -> torch.Tensor:
        """Features (N, feature_dim) float32 for uint8 RGB frames (N, H, W, 3), numpy or torch."""
        t = _as_uint8_tensor(frames)
        if t.shape[0] == 0:
            return torch.empty((0, self.feature_dim), dtype=torch.float32, device=self.device)
        with self._inference_context():
            feats = self.trunk(self._normalise(t))
        return feats.float()

    def classify(self, frames: Frames) -> torch.Tensor:
        """ImageNet logits (N, 1000) float32; raises ModelError for a backbone without a classifier."""
        if self.head is None:
            raise ModelError(f"backbone '{self.name}' has no ImageNet classifier")
        t = _as_uint8_tensor(frames)
        if t.shape[0] == 0:
            return torch.empty((0, _out_features(self.head)), dtype=torch.float32, device=self.device)
        with self._inference_context():
            logits = self.head(self.trunk(self._normalise(t)))
        return logits.float()


def _out_features(head: nn.Module) -> int:
    last = [m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    return int(last.out_features if isinstance(last, nn.Linear) else last.out_channels)


def _as_uint8_tensor(frames: Frames) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise InvalidFramesError(f"frames must be uint8, got numpy {frames.dtype}")
        if not frames.flags.writeable:
            # torch.from_numpy warns on read-only arrays (decoders hand those out); a uint8 copy is cheap
            frames = frames.copy()
        t = torch.from_numpy(np.ascontiguousarray(frames))
    elif isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise InvalidFramesError(f"frames must be uint8, got torch {frames.dtype}")
        t = frames
    else:
        raise InvalidFramesError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if t.ndim != 4 or t.shape[-1] != 3:
        raise InvalidFramesError(f"frames must have shape (N, H, W, 3), got {tuple(t.shape)}")
    return t
