"""The module callers use for clip backbones: uint8 RGB windows ``(N, T, H, W, 3)`` in, per-clip features
``(N, D)`` and per-time features ``(N, T', D)`` out, preprocessing (resize, centre crop, value range) done
inside on the module's device, as :class:`~nexara.backbones.spec.ClipSpec` says."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nexara.backbones.spec import ClipSpec
from nexara.errors import InvalidFramesError, ModelError

__all__ = ["ClipBackbone", "ClipFeatures", "windows_to_input"]

Windows = np.ndarray | torch.Tensor


@dataclass(frozen=True, slots=True)
class ClipFeatures:
    pooled: torch.Tensor  # (N, D) float32: one vector per window
    per_time: torch.Tensor  # (N, T', D) float32: the backbone's temporal feature map, pooled over space


def windows_to_input(
    windows: torch.Tensor, short_side_px: int, crop_px: int, value_range: tuple[float, float] = (-1.0, 1.0)
) -> torch.Tensor:
    """uint8 ``(N, T, H, W, 3)`` -> float ``(N, 3, T, crop, crop)``: bilinear (antialiased) resize of the short
    side to ``short_side_px`` (skipped when the frames already have it), centre crop, values mapped from
    0..255 onto ``value_range``."""
    n, t, h, w, _ = windows.shape
    x = windows.reshape(n * t, h, w, 3).permute(0, 3, 1, 2).float()
    scale = short_side_px / min(h, w)
    size = (max(crop_px, round(h * scale)), max(crop_px, round(w * scale)))
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - crop_px) // 2, (size[1] - crop_px) // 2
    x = x[:, :, top : top + crop_px, left : left + crop_px]
    lo, hi = value_range
    # divide by 255 / (hi - lo) (127.5 for [-1, 1]): the reference's exact arithmetic, not a rounded reciprocal
    x = (x / (255.0 / (hi - lo)) + lo).clamp_(lo, hi)
    return x.reshape(n, t, 3, crop_px, crop_px).permute(0, 2, 1, 3, 4).contiguous()


class ClipBackbone(nn.Module):
    """A frozen clip feature extractor.

    ``net`` maps ``(N, 3, T, crop, crop)`` floats in ``spec.value_range`` to an object with ``pooled``
    ``(N, D)``, ``per_time`` ``(N, T', D)`` and ``logits`` (``None`` when it has no classifier). Windows
    must hold exactly ``spec.num_frames`` frames: the spec's hash promises that T. In eval mode
    ``forward`` runs under ``torch.no_grad`` and, on CUDA, under autocast when ``autocast`` is set.
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        spec: ClipSpec,
        feature_dim: int,
        *,
        weights_source: str | None = None,
        autocast: bool = True,
        amp_dtype: torch.dtype = torch.float16,
    ) -> None:
        super().__init__()
        self.name = name
        self.net = net
        self.spec = spec
        self.spec_hash = spec.hash()
        self.feature_dim = int(feature_dim)
        self.weights_source = weights_source
        self.autocast = autocast
        self.amp_dtype = amp_dtype
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, spec_hash={self.spec_hash}"

    def preprocess(self, windows: Windows) -> torch.Tensor:
        """uint8 ``(N, T, H, W, 3)`` -> the net's float input ``(N, 3, T, crop, crop)`` on this module's device."""
        t = self._as_windows(windows).to(self.device, non_blocking=True)  # ship uint8, convert on the device
        s = self.spec
        return windows_to_input(t, s.short_side_px, s.crop_px, s.value_range)

    def _inference_context(self) -> contextlib.AbstractContextManager[Any]:
        stack = contextlib.ExitStack()
        if not self.training:
            stack.enter_context(torch.no_grad())
            if self.autocast and self.device.type == "cuda":
                stack.enter_context(torch.autocast("cuda", dtype=self.amp_dtype))
        return stack

    def _run(self, windows: Windows) -> Any:
        with self._inference_context():
            return self.net(self.preprocess(windows))

    def forward(self, windows: Windows) -> ClipFeatures:
        """Per-window and per-time features (float32) for uint8 RGB windows ``(N, T, H, W, 3)``."""
        t = self._as_windows(windows)
        if t.shape[0] == 0:
            empty = torch.empty((0, self.feature_dim), dtype=torch.float32, device=self.device)
            return ClipFeatures(empty, empty.reshape(0, 0, self.feature_dim))
        out = self._run(t)
        return ClipFeatures(out.pooled.float(), out.per_time.float())

    def classify(self, windows: Windows) -> torch.Tensor:
        """The backbone's own class logits (Kinetics-400 for I3D) per window, float32."""
        out = self._run(windows)
        if getattr(out, "logits", None) is None:
            raise ModelError(f"clip backbone '{self.name}' has no classifier")
        return out.logits.float()

    def _as_windows(self, windows: Windows) -> torch.Tensor:
        if isinstance(windows, np.ndarray):
            if windows.dtype != np.uint8:
                raise InvalidFramesError(f"windows must be uint8, got numpy {windows.dtype}")
            # read-only arrays (decoders, Ray's object store) make torch warn; a uint8 copy is cheap
            t = torch.from_numpy(np.ascontiguousarray(windows) if windows.flags.writeable else windows.copy())
        elif isinstance(windows, torch.Tensor):
            if windows.dtype != torch.uint8:
                raise InvalidFramesError(f"windows must be uint8, got torch {windows.dtype}")
            t = windows
        else:
            raise InvalidFramesError(f"windows must be a numpy array or torch tensor, got {type(windows).__name__}")
        if t.ndim != 5 or t.shape[-1] != 3:
            raise InvalidFramesError(f"windows must have shape (N, T, H, W, 3), got {tuple(t.shape)}")
        if t.shape[1] != self.spec.num_frames:
            raise InvalidFramesError(
                f"clip backbone '{self.name}' (spec {self.spec_hash}) takes windows of {self.spec.num_frames} "
                f"frames, got {t.shape[1]}"
            )
        return t
