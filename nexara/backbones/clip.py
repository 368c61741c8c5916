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

__all__ = ["ClipBackbone", "ClipFeatures", "motion_box", "motion_view", "windows_to_input"]

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


# frame differences are summed on a grid this much coarser than the frame (cheap, and noise averages out)
_MOTION_GRID_PX = 8


def motion_box(frames: torch.Tensor, fraction: float) -> tuple[int, int, int]:
    """(top, left, side) of the square of side ``fraction`` x the short side where the absolute grey-level
    differences between consecutive frames of ``frames`` (uint8 or float ``(T, H, W, 3)``), summed over
    the window on an 8-px grid, carry the most energy (the first such square on ties: a still window
    gives the top-left one)."""
    t, h, w, _ = frames.shape
    side = max(1, int(fraction * min(h, w)))
    if t < 2:
        return (h - side) // 2, (w - side) // 2, side
    k = _MOTION_GRID_PX
    grey = frames.float().mean(dim=3)  # (T, H, W)
    small = F.avg_pool2d(grey.unsqueeze(1), k, k, ceil_mode=True).squeeze(1)
    energy = (small[1:] - small[:-1]).abs().sum(0)  # (h', w')
    box_cells = max(1, side // k)
    kh, kw = min(box_cells, energy.shape[0]), min(box_cells, energy.shape[1])
    scores = F.avg_pool2d(energy[None, None], (kh, kw), stride=1)[0, 0]
    row, col = divmod(int(scores.argmax()), scores.shape[1])
    return min(row * k, h - side), min(col * k, w - side), side


def motion_view(windows: torch.Tensor, fraction: float) -> torch.Tensor:
    """uint8 ``(N, T, H, W, 3)`` -> uint8 ``(N, T, side, side, 3)``: each window's :func:`motion_box`."""
    crops = []
    for window in windows:
        top, left, side = motion_box(window, fraction)
        crops.append(window[:, top : top + side, left : left + side])
    return torch.stack(crops)


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
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.name = name
        # NDHWC convolutions: 1.7-4x faster for I3D on this 2-core CPU, same outputs to ~1e-6
        # (research/issue11/FINDINGS.md, bench_cl.py)
        self.channels_last = channels_last
        if channels_last:
            net = net.to(memory_format=torch.channels_last_3d)
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

    @property
    def views(self) -> int:
        """Net passes per window: 1 (centre crop), 2 with the spec's motion crop (features averaged)."""
        return 2 if self.spec.motion_crop else 1

    def preprocess(self, windows: Windows) -> torch.Tensor:
        """uint8 ``(N, T, H, W, 3)`` -> the net's float input ``(views * N, 3, T, crop, crop)`` on this
        module's device: the centre crops of the N windows, then (with a motion crop) their motion views."""
        t = self._as_windows(windows).to(self.device, non_blocking=True)  # ship uint8, convert on the device
        s = self.spec
        centre = windows_to_input(t, s.short_side_px, s.crop_px, s.value_range)
        if not s.motion_crop:
            return centre
        moving = windows_to_input(motion_view(t, s.motion_crop), s.crop_px, s.crop_px, s.value_range)
        return torch.cat([centre, moving])

    def _inference_context(self) -> contextlib.AbstractContextManager[Any]:
        stack = contextlib.ExitStack()
        if not self.training:
            stack.enter_context(torch.no_grad())
            if self.autocast and self.device.type == "cuda":
                stack.enter_context(torch.autocast("cuda", dtype=self.amp_dtype))
        return stack

    def _run(self, windows: Windows) -> Any:
        with self._inference_context():
            x = self.preprocess(windows)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            return self.net(x)

    def _mean_views(self, x: torch.Tensor) -> torch.Tensor:
        """The net's ``(views * N, ...)`` outputs -> ``(N, ...)``: the mean over views (float32)."""
        x = x.float()
        return x.reshape(self.views, -1, *x.shape[1:]).mean(dim=0) if self.views > 1 else x

    def forward(self, windows: Windows) -> ClipFeatures:
        """Per-window and per-time features (float32) for uint8 RGB windows ``(N, T, H, W, 3)``."""
        t = self._as_windows(windows)
        if t.shape[0] == 0:
            empty = torch.empty((0, self.feature_dim), dtype=torch.float32, device=self.device)
            return ClipFeatures(empty, empty.reshape(0, 0, self.feature_dim))
        out = self._run(t)
        return ClipFeatures(self._mean_views(out.pooled), self._mean_views(out.per_time))

    def classify(self, windows: Windows) -> torch.Tensor:
        """The backbone's own class logits (Kinetics-400 for I3D) per window, float32."""
        out = self._run(windows)
        if getattr(out, "logits", None) is None:
            raise ModelError(f"clip backbone '{self.name}' has no classifier")
        return self._mean_views(out.logits)

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
