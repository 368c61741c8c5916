"""Incremental motion features for overlapping live windows (pure logic, no Ray).

A stream actor scores a sliding window of the last few seconds every stride. Recomputing
:func:`nexara.motion.motion_from_gray` per window would run the Farneback flow of every frame pair
once per window it falls in; :class:`MotionBuffer` computes each pair's flow once, when the frame is
pushed (:func:`nexara.motion.pair_flow`), caches it with the pooled frame, and builds the vector of
any recent window from the cache (:func:`nexara.motion.motion_from_flows`): bit-identical to
``motion_from_gray`` on the same gray frames and times.

Frames enter as gray at ``spec.size_hw``: :func:`to_gray` squashes an RGB frame (or a crop of a
monitor-wall cell) the way :func:`nexara.motion.clip_motion` does (swscale bilinear resize, then
OpenCV's RGB -> gray).
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np

from nexara.errors import InvalidInputError
from nexara.media import resize_frame
from nexara.motion import MOTION_DIM, MotionSpec, motion_from_flows, pair_flow, pool_gray

__all__ = ["MotionBuffer", "to_gray"]

logger = logging.getLogger(__name__)


def to_gray(rgb: np.ndarray, spec: MotionSpec) -> np.ndarray:
    """An (H, W, 3) uint8 RGB frame or crop -> (spec.size_hw) uint8 gray, as ``clip_motion`` makes
    its frames: squashed to ``spec.size_hw`` by swscale (bilinear, :func:`nexara.media.resize_frame`)
    then ``cv2.cvtColor(RGB2GRAY)``.

    ``clip_motion`` resizes the decoded YUV frame directly while this resizes its RGB conversion, so
    on the same video the gray frames can differ by a grey level or so; a frame already at
    ``spec.size_hw`` is converted exactly as ``clip_motion`` converts it.
    """
    import cv2

    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InvalidInputError(f"expected an (H, W, 3) uint8 RGB frame, got {got}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InvalidInputError(f"expected a non-empty (H, W, 3) RGB frame, got shape {rgb.shape}")
    squashed = resize_frame(rgb, spec.size_hw, "squash")
    return cv2.cvtColor(squashed, cv2.COLOR_RGB2GRAY)


class MotionBuffer:
    """The last ``max_frames`` gray frames of a stream, with the flow of each consecutive pair
    computed once at :meth:`push`.

    Memory per frame: the pooled frame (ph*pw bytes), two pooled flows (2 * ph*pw*2 float32) and the
    last gray frame; about 0.33 MB per frame at the default spec (120x160 pooled).
    """

    def __init__(self, spec: MotionSpec, max_frames: int) -> None:
        if not isinstance(spec, MotionSpec):
            raise TypeError(f"spec must be a MotionSpec, got {type(spec).__name__}")
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2:
            raise InvalidInputError(f"max_frames must be an int >= 2 (a window needs two frames), got {max_frames!r}")
        self.spec = spec
        self.max_frames = max_frames
        self._times: deque[float] = deque(maxlen=max_frames)
        self._pooled: deque[np.ndarray] = deque(maxlen=max_frames)
        # flows of the pairs ending at each buffered frame but the oldest
        self._scaled: deque[np.ndarray] = deque(maxlen=max_frames - 1)
        self._raw: deque[np.ndarray] = deque(maxlen=max_frames - 1)
        self._last: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._times)

    @property
    def times(self) -> np.ndarray:
        """Times (s) of the buffered frames, oldest first."""
        return np.asarray(self._times, dtype=np.float64)

    def reset(self) -> None:
        """Forget every frame (after a reconnect or any other gap: no flow across it)."""
        self._times.clear()
        self._pooled.clear()
        self._scaled.clear()
        self._raw.clear()
        self._last = None

    def push(self, gray: np.ndarray, time_s: float) -> None:
        """Add a (spec.size_hw) uint8 gray frame at ``time_s`` seconds (not before the previous
        frame's time); computes the flow from the previous frame (one Farneback call) and drops the
        oldest frame beyond ``max_frames``."""
        h, w = self.spec.size_hw
        if not isinstance(gray, np.ndarray) or gray.shape != (h, w) or gray.dtype != np.uint8:
            got = f"{gray.dtype} {gray.shape}" if isinstance(gray, np.ndarray) else type(gray).__name__
            raise InvalidInputError(f"expected a ({h}, {w}) uint8 gray frame (spec.size_hw; see to_gray), got {got}")
        t = float(time_s)
        if not math.isfinite(t):
            raise InvalidInputError(f"time_s must be finite, got {time_s!r}")
        if self._times and t < self._times[-1]:
            raise InvalidInputError(
                f"time_s {t:.6f} is before the previous frame's {self._times[-1]:.6f}; reset() after a discontinuity"
            )
        gray = np.array(gray, order="C", copy=True)  # the caller may reuse its array
        if self._last is not None:
            scaled, raw = pair_flow(self._last, gray, t - self._times[-1], self.spec)
            self._scaled.append(scaled)
            self._raw.append(raw)
        self._pooled.append(pool_gray(gray, self.spec))
        self._times.append(t)
        self._last = gray

    def features(self, n_frames: int | None = None) -> np.ndarray:
        """The (:data:`nexara.motion.MOTION_DIM`,) float32 motion vector of the last ``n_frames``
        frames (all buffered frames when None): ``motion_from_gray`` of those frames and times, bit
        for bit. Fewer than 2 frames (an empty buffer included): the zero vector."""
        if n_frames is None and len(self) < 2:
            return np.zeros(MOTION_DIM, dtype=np.float32)
        n = len(self) if n_frames is None else n_frames
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"n_frames must be an int >= 1 or None, got {n_frames!r}")
        if n > len(self):
            raise InvalidInputError(
                f"n_frames={n} but only {len(self)} frame(s) are buffered (max_frames={self.max_frames})"
            )
        if n < 2:
            return np.zeros(MOTION_DIM, dtype=np.float32)
        times = np.asarray(self._times, dtype=np.float64)[-n:]
        n_pairs = n - 1
        scaled = list(self._scaled)[-n_pairs:]
        raw = list(self._raw)[-n_pairs:]
        pooled = np.stack(list(self._pooled)[-n:])
        return motion_from_flows(scaled, raw, pooled, np.diff(times), self.spec)
