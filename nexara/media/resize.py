"""Conversion of decoded frames to RGB arrays of a given size under a resize policy (one swscale
call per frame)."""

from __future__ import annotations

import math
from typing import get_args

import av
import numpy as np

from nexara.media.types import ResizePolicy

__all__ = ["resize_frame"]

_POLICIES: frozenset[str] = frozenset(get_args(ResizePolicy))


def _check_size(size_hw: tuple[int, int] | None) -> None:
    if size_hw is None:
        return
    if len(size_hw) != 2 or int(size_hw[0]) < 1 or int(size_hw[1]) < 1:
        raise ValueError(f"size_hw must be (height, width) with both >= 1, got {size_hw!r}")


def _check_policy(policy: str) -> None:
    if policy not in _POLICIES:
        raise ValueError(f"resize policy must be one of {sorted(_POLICIES)}, got {policy!r}")


def _fit_inside(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """Largest (h, w) with the source's aspect ratio that fits inside ``dst_hw`` (letterbox)."""
    scale = min(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    return (
        min(dst_hw[0], max(1, round(src_hw[0] * scale))),
        min(dst_hw[1], max(1, round(src_hw[1] * scale))),
    )


def _cover(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """Smallest (h, w) with the source's aspect ratio that covers ``dst_hw`` (centre crop)."""
    scale = max(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    return (
        max(dst_hw[0], math.ceil(src_hw[0] * scale - 1e-9)),
        max(dst_hw[1], math.ceil(src_hw[1] * scale - 1e-9)),
    )


def _frame_to_rgb(frame: av.VideoFrame, size_hw: tuple[int, int] | None, policy: ResizePolicy) -> np.ndarray:
    """Convert (and resize, in the same swscale call) one decoded frame to (H, W, 3) uint8 RGB."""
    if size_hw is None or (frame.height, frame.width) == tuple(size_hw):
        return frame.to_ndarray(format="rgb24")
    dst_h, dst_w = int(size_hw[0]), int(size_hw[1])
    if policy == "squash":
        return frame.reformat(width=dst_w, height=dst_h, format="rgb24").to_ndarray()
    if policy == "letterbox":
        fit_h, fit_w = _fit_inside((frame.height, frame.width), (dst_h, dst_w))
        inner = frame.reformat(width=fit_w, height=fit_h, format="rgb24").to_ndarray()
        out = np.zeros((dst_h, dst_w, 3), dtype=np.uint8)
        top, left = (dst_h - fit_h) // 2, (dst_w - fit_w) // 2
        out[top : top + fit_h, left : left + fit_w] = inner
        return out
    if policy == "center_crop":
        cov_h, cov_w = _cover((frame.height, frame.width), (dst_h, dst_w))
        full = frame.reformat(width=cov_w, height=cov_h, format="rgb24").to_ndarray()
        top, left = (cov_h - dst_h) // 2, (cov_w - dst_w) // 2
        return np.ascontiguousarray(full[top : top + dst_h, left : left + dst_w])
    raise ValueError(f"resize policy must be one of {sorted(_POLICIES)}, got {policy!r}")


def resize_frame(rgb: np.ndarray, size_hw: tuple[int, int], policy: ResizePolicy) -> np.ndarray:
    """Resize one (H, W, 3) uint8 RGB image to ``size_hw`` (swscale bilinear).

    ``"squash"`` stretches to the size; ``"letterbox"`` keeps the aspect ratio and pads with black,
    centred; ``"center_crop"`` keeps the aspect ratio, fills the size and crops the centre.
    """
    _check_size(size_hw)
    _check_policy(policy)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return np.ascontiguousarray(_frame_to_rgb(frame, size_hw, policy))
