"""Motion vectors of whole clips: from per-pair flows (the live path's cache), from gray frames, or
from a video decoded once."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from nexara.media import Source, iter_frames
from nexara.motion.flow import pair_flow, pool_gray
from nexara.motion.spec import _MIN_DT_S, MOTION_DIM, MotionSpec
from nexara.motion.stats import (
    _diff_features,
    _extra_features,
    _flow_features,
    _local_features,
    _pair_stats,
    _vif_features,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = ["clip_motion", "gray_frames", "motion_from_flows", "motion_from_gray", "window_motion"]

logger = logging.getLogger(__name__)

# Frame pairs processed at once by the statistics (bounds the memory of long clips).
_CHUNK = 64


def _check_frames(frames: np.ndarray, times_s: np.ndarray, spec: MotionSpec) -> None:
    if frames.ndim != 3 or frames.dtype != np.uint8 or tuple(frames.shape[1:]) != tuple(spec.size_hw):
        raise ValueError(
            f"expected (N, {spec.size_hw[0]}, {spec.size_hw[1]}) uint8 frames, got {frames.dtype} {frames.shape}"
        )
    if times_s.shape != (frames.shape[0],):
        raise ValueError(f"expected {frames.shape[0]} timestamps, got shape {times_s.shape}")


def _series(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-pair statistics of consecutive chunks of (flow_scaled, flow_raw) (T, ph, pw, 2)."""
    out: list[dict[str, np.ndarray]] = []
    prev: dict[str, np.ndarray] | None = None
    for flow, raw in chunks:
        stats, prev = _pair_stats(flow, raw, prev)
        out.append(stats)
    return {k: np.concatenate([c[k] for c in out]) for k in out[0]}


def _vector(series: dict[str, np.ndarray], pooled: np.ndarray, dt: np.ndarray) -> np.ndarray:
    vec = np.concatenate(
        [
            _flow_features(series),
            _diff_features(pooled, dt),
            _extra_features(series),
            _vif_features(series),
            _local_features(series),
        ]
    )
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def motion_from_flows(
    flows_scaled: Sequence[np.ndarray] | np.ndarray,
    flows_raw: Sequence[np.ndarray] | np.ndarray,
    pooled_frames: Sequence[np.ndarray] | np.ndarray,
    dt: Sequence[float] | np.ndarray,
    spec: MotionSpec | None = None,
) -> np.ndarray:
    """Motion features of N frames from their N-1 per-pair flows (:func:`pair_flow`), their N pooled
    gray frames (:func:`pool_gray`) and the N-1 time steps between them (seconds; clamped to
    >= 1 ms).

    ``flows_scaled`` / ``flows_raw``: N-1 arrays (ph, pw, 2) float32 (or one (N-1, ph, pw, 2)
    array); ``pooled_frames``: N (ph, pw) uint8. Returns the (:data:`MOTION_DIM`,) float32 vector
    :func:`motion_from_gray` returns for the same frames and times, bit for bit (the pairs are
    processed in the same chunks). Fewer than 2 frames: the zero vector.
    """
    spec = spec or MotionSpec()
    dt = np.clip(np.asarray(dt, dtype=np.float64).reshape(-1), _MIN_DT_S, None)
    n_pairs = len(dt)
    ph, pw = spec.pooled_hw
    if len(flows_scaled) != n_pairs or len(flows_raw) != n_pairs or len(pooled_frames) != n_pairs + 1:
        raise ValueError(
            f"expected N-1 flows and time steps for N pooled frames, got {len(flows_scaled)} scaled flows, "
            f"{len(flows_raw)} raw flows, {n_pairs} time steps and {len(pooled_frames)} pooled frames"
        )
    pooled = np.asarray(pooled_frames)
    if pooled.ndim != 3 or pooled.dtype != np.uint8 or tuple(pooled.shape[1:]) != (ph, pw):
        raise ValueError(f"expected (N, {ph}, {pw}) uint8 pooled frames, got {pooled.dtype} {pooled.shape}")
    if n_pairs < 1:
        return np.zeros(MOTION_DIM, dtype=np.float32)

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, n_pairs, _CHUNK):
            stop = min(start + _CHUNK, n_pairs)
            pair = []
            for flows in (flows_scaled, flows_raw):
                block = np.stack([np.asarray(flows[k]) for k in range(start, stop)])
                if block.dtype != np.float32 or block.shape[1:] != (ph, pw, 2):
                    raise ValueError(f"expected ({ph}, {pw}, 2) float32 flows, got {block.dtype} {block.shape[1:]}")
                pair.append(block)
            yield pair[0], pair[1]

    return _vector(_series(chunks()), pooled, dt)


def motion_from_gray(frames: np.ndarray, times_s: np.ndarray, spec: MotionSpec | None = None) -> np.ndarray:
    """Motion features of gray frames (N, H, W) uint8 at ``spec.size_hw`` with their times (N,) s.

    Returns a (:data:`MOTION_DIM`,) float32 vector, always finite. With fewer than 2 frames there
    is no motion to measure and the vector is all zeros. Time steps below 1 ms (repeated
    timestamps) are clamped to 1 ms. Same as :func:`pair_flow` on every consecutive pair followed
    by :func:`motion_from_flows` (with the flows of at most 64 pairs in memory at once).
    """
    spec = spec or MotionSpec()
    frames = np.asarray(frames)
    times_s = np.asarray(times_s, dtype=np.float64)
    _check_frames(frames, times_s, spec)
    n = frames.shape[0]
    if n < 2:
        return np.zeros(MOTION_DIM, dtype=np.float32)
    dt = np.clip(np.diff(times_s), _MIN_DT_S, None)
    ph, pw = spec.pooled_hw

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, n - 1, _CHUNK):
            stop = min(start + _CHUNK, n - 1)
            flow = np.empty((stop - start, ph, pw, 2), dtype=np.float32)
            raw = np.empty_like(flow)
            for k in range(start, stop):
                flow[k - start], raw[k - start] = pair_flow(frames[k], frames[k + 1], float(dt[k]), spec)
            yield flow, raw

    series = _series(chunks())
    pooled = np.stack([pool_gray(f, spec) for f in frames])
    return _vector(series, pooled, dt)


def clip_motion(
    source: Source,
    *,
    spec: MotionSpec | None = None,
    timeout_s: float = 10.0,
    max_seconds: float | None = None,
    options: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Motion features (:data:`MOTION_DIM`,) float32 of a video: path, URL or bytes.

    Decodes the source once with :func:`nexara.media.iter_frames` at ``spec.fps`` and
    ``spec.size_hw`` (squashed), converts to gray and calls :func:`motion_from_gray` (``spec``
    None means ``MotionSpec()``). A one-frame video gives the zero vector.
    ``max_seconds`` keeps only the first seconds of the video (needed for live streams).
    Unreadable sources raise the typed :class:`nexara.errors.MediaError` subclasses.
    """
    spec = spec or MotionSpec()
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds!r}")
    started = time.perf_counter()
    grays, times = gray_frames(source, spec, timeout_s=timeout_s, max_seconds=max_seconds, options=options)
    decoded = time.perf_counter()
    vec = motion_from_gray(grays, times, spec)
    logger.debug(
        "%s: motion from %d frames: decode %.0f ms, features %.0f ms",
        _label(source),
        len(grays),
        (decoded - started) * 1e3,
        (time.perf_counter() - decoded) * 1e3,
    )
    return vec


def _label(source: Source) -> str:
    return "<bytes>" if isinstance(source, bytes | bytearray) else str(source)


def gray_frames(
    source: Source,
    spec: MotionSpec,
    *,
    timeout_s: float = 10.0,
    max_seconds: float | None = None,
    options: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The frames the motion statistics read: ``(N, H, W)`` uint8 gray at ``spec.fps`` and ``spec.size_hw``
    (squashed by :func:`nexara.media.iter_frames`, then OpenCV's RGB -> gray) and their times (s);
    ``max_seconds`` keeps only the first seconds. The one decode behind :func:`clip_motion`,
    :func:`window_motion` and the model runtime."""
    import cv2

    cv2.setNumThreads(1)
    grays: list[np.ndarray] = []
    times: list[float] = []
    with iter_frames(
        source, fps=spec.fps, size_hw=spec.size_hw, resize="squash", timeout_s=timeout_s, options=options
    ) as frames:
        for frame in frames:
            if max_seconds is not None and times and frame.time_s - times[0] > max_seconds:
                break
            grays.append(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY))
            times.append(frame.time_s)
    h, w = spec.size_hw
    stack = np.stack(grays) if grays else np.zeros((0, h, w), dtype=np.uint8)
    return stack, np.asarray(times, dtype=np.float64)


def window_motion(
    source: Source,
    bounds_s: Sequence[tuple[float, float]],
    *,
    spec: MotionSpec | None = None,
    timeout_s: float = 10.0,
) -> np.ndarray:
    """Motion features ``(W, MOTION_DIM)`` float32 of the windows ``[start_s, end_s)`` of one video,
    decoded once as :func:`clip_motion` decodes it (``spec.fps``, gray at ``spec.size_hw``).

    Each window's vector is :func:`motion_from_gray` of the gray frames whose times fall in it, at most
    the last ``round(window length x spec.fps) + 1`` of them: what a live cell's
    :class:`~actors.motion_window.MotionBuffer` holds when that window is cut, so a model trained on these
    vectors sees the live path's statistics. A window with fewer than two frames gives the zero vector.
    """
    spec = spec or MotionSpec()
    grays, t = gray_frames(source, spec, timeout_s=timeout_s)
    out = np.zeros((len(bounds_s), MOTION_DIM), dtype=np.float32)
    eps = 1e-6
    for i, (start, end) in enumerate(bounds_s):
        idx = np.flatnonzero((t >= start - eps) & (t < end - eps))
        idx = idx[-(round((end - start) * spec.fps) + 1) :]
        if len(idx) >= 2:
            out[i] = motion_from_gray(grays[idx], t[idx], spec)
    return out
