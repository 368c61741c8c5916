"""Which frames to keep: at a frame rate from a stream of timestamps, a fixed number spread over
a whole video, or a fixed number spread over each of a video's windows."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FpsSampler", "sample_indices", "window_indices"]


class FpsSampler:
    """Picks frames from a stream of timestamps at (about) ``fps``: the first frame at or after each
    ``1/fps`` slot after the first frame, with a tolerance (default: half a source frame,
    ``0.5 / native_fps``, 1 ms when that is unknown) so timestamp rounding does not shift the pick.
    A source slower than ``fps`` keeps every frame. Kept times are strictly increasing.
    This is the rule :func:`iter_frames` uses.
    """

    __slots__ = ("_first", "_fps", "_next", "tolerance_s")

    def __init__(self, fps: float, native_fps: float = 0.0, *, tolerance_s: float | None = None) -> None:
        if not fps > 0 or not math.isfinite(fps):
            raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
        self._fps = float(fps)
        if tolerance_s is None:
            tolerance_s = 0.5 / native_fps if native_fps > 0 else 1e-3
        self.tolerance_s = float(tolerance_s)
        self._first = 0.0
        self._next: float | None = None

    def keep(self, t: float) -> bool:
        """Whether the frame at time ``t`` (seconds, non-decreasing calls) is kept."""
        tol = self.tolerance_s
        if self._next is None:
            self._first = t
            self._next = t
        if t < self._next - tol:
            return False
        slot = math.floor((t - self._first + tol) * self._fps)
        self._next = self._first + (slot + 1) / self._fps
        return True


def sample_indices(frame_count: int, num_frames: int) -> np.ndarray:
    """``num_frames`` frame indices spread evenly over ``frame_count`` frames, first and last
    included (repeats when ``num_frames > frame_count``)."""
    if frame_count < 1 or num_frames < 1:
        raise ValueError(f"need frame_count >= 1 and num_frames >= 1, got {frame_count} and {num_frames}")
    return np.linspace(0, frame_count - 1, num_frames).round().astype(np.int64)


def window_indices(
    frame_count: int, fps: float, *, window_s: float, hop_s: float, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window_s`` seconds every ``hop_s`` seconds over ``frame_count`` frames at ``fps``, with
    ``num_frames`` indices spread evenly over each (its first and last frame included).

    Windows start at frame 0 and every hop while they fit (a tail shorter than a hop is not covered,
    as on a live stream); a video no longer than one window (or of unknown ``fps``) gives one window
    over all of it. Returns (indices (W, num_frames) int64, bounds (W, 2) int64: first frame and one
    past the last frame of each window).
    """
    if not (window_s > 0 and hop_s > 0):
        raise ValueError(f"need window_s > 0 and hop_s > 0, got {window_s} and {hop_s}")
    span = max(1, round(window_s * fps)) if fps > 0 else frame_count
    if span >= frame_count:
        starts = np.zeros(1, np.int64)
        span = frame_count
    else:
        starts = np.arange(0, frame_count - span + 1, max(1, round(hop_s * fps)), dtype=np.int64)
    indices = starts[:, None] + sample_indices(span, num_frames)[None, :]
    return indices, np.stack([starts, starts + span], axis=1)
