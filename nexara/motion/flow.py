"""Dense Farneback optical flow of one gray frame pair, pooled, and the pooled gray frames (OpenCV,
imported lazily and limited to one thread per call)."""

from __future__ import annotations

import numpy as np

from nexara.motion.spec import _MIN_DT_S, _REF_DT_S, MotionSpec

__all__ = ["pair_flow", "pool_gray"]


def _check_gray(gray: np.ndarray, spec: MotionSpec, what: str) -> None:
    if gray.ndim != 2 or gray.dtype != np.uint8 or tuple(gray.shape) != tuple(spec.size_hw):
        raise ValueError(
            f"expected {what} to be a ({spec.size_hw[0]}, {spec.size_hw[1]}) uint8 gray frame "
            f"(spec.size_hw), got {gray.dtype} {gray.shape}"
        )


def pair_flow(prev_gray: np.ndarray, gray: np.ndarray, dt_s: float, spec: MotionSpec) -> tuple[np.ndarray, np.ndarray]:
    """Dense Farneback flow from ``prev_gray`` to ``gray`` (both (H, W) uint8 at ``spec.size_hw``),
    ``dt_s`` seconds apart, mean-pooled to ``spec.pooled_hw``.

    Returns ``(flow_scaled, flow_raw)``, each (ph, pw, 2) float32 (x, y): ``flow_raw`` in pooled
    pixels per pair (what ViF uses), ``flow_scaled`` in pooled pixels per 0.1 s (divided by
    ``dt_s``, clamped to >= 1 ms) with the pair's median flow subtracted when ``spec.compensate``.
    These are exactly the per-pair flows :func:`motion_from_gray` computes, so
    :func:`motion_from_flows` on them gives its vector bit for bit.
    """
    import cv2

    _check_gray(prev_gray, spec, "prev_gray")
    _check_gray(gray, spec, "gray")
    cv2.setNumThreads(1)
    dt = max(float(dt_s), _MIN_DT_S)
    (h, w), (ph, pw) = spec.size_hw, spec.pooled_hw
    fy, fx = h // ph, w // pw
    fb = spec.farneback
    # (the OpenCV stubs do not allow flow=None, the documented way to get a new array)
    full = cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
        prev_gray, gray, None,
        fb.pyr_scale, fb.levels, fb.winsize, fb.iterations, fb.poly_n, fb.poly_sigma, 0,
    )  # fmt: skip
    flow = full.reshape(ph, fy, pw, fx, 2).mean(axis=(1, 3))
    # ViF uses the flow in pooled px per pair, neither time-normalised nor compensated
    raw = flow * np.array([pw / w, ph / h], dtype=np.float32)
    # pooled px per 0.1 s: x and y scale to the pooled size, then divide by the pair's time step
    flow *= (np.array([pw / w, ph / h]) * (_REF_DT_S / dt)).astype(np.float32)
    if spec.compensate:
        # (median over a contiguous copy of each component: several times faster than strided)
        flow -= np.median(np.moveaxis(flow, 2, 0).reshape(2, -1), axis=1)
    return flow, raw


def pool_gray(gray: np.ndarray, spec: MotionSpec) -> np.ndarray:
    """A (H, W) uint8 gray frame at ``spec.size_hw`` mean-pooled (``cv2.INTER_AREA``) to
    ``spec.pooled_hw``: the frames the difference features of :func:`motion_from_flows` use."""
    import cv2

    _check_gray(gray, spec, "gray")
    (h, w), (ph, pw) = spec.size_hw, spec.pooled_hw
    if (h, w) == (ph, pw):
        return gray
    return cv2.resize(gray, (pw, ph), interpolation=cv2.INTER_AREA)
