"""Windowing, the first live stage: one cell's frames in, :class:`~actors.records.WindowInfo` out.

Per cell (a camera; a monitor wall has several), frames are sampled with the media layer's
:class:`~nexara.media.FpsSampler`: at the model's frame rate into a ring of model-size frames, at the
motion statistics' rate into the incremental :class:`~actors.motion_window.MotionBuffer` (flow once per
frame pair), and a few times per ``no_signal_check_s`` into the black / frozen check. A window of
``window_s`` is cut every ``stride_s`` once the ring is full and the motion buffer holds enough frames;
while the cell is hot (:meth:`CellWindower.set_hot`) the hop is ``alert_stride_s``. A cell without a
picture gives :class:`~actors.records.NoSignal` instead of a window (nothing to score).

A model on a clip backbone (``LiveModel.clip``) is windowed as its training windows were cut offline
(:func:`nexara.media.window_indices`): :class:`ClipRing` keeps every source frame of the last window at
the clip spec's decode size (``center_crop``), and each window takes ``num_frames`` of its frames evenly
(first and last included) by position, exactly as offline sampling picks them by index.

The cut guard restarts the motion statistics after a cut: one frame pair far more different than the
recent ones (a scene change, a loop seam, a DVR switching cameras), as opposed to motion, which builds
up over several pairs. Flow across a cut looked like a fight. Pure logic: no threads, no Ray.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from actors.grid import CellBox, GridSpec, cell_signal, detect_grid, grid_shape
from actors.motion_window import MotionBuffer, to_gray
from actors.records import NoSignal, Signal, WindowInfo
from nexara.config import WindowsConfig
from nexara.errors import InvalidInputError, ModelError
from nexara.media import FpsSampler, resize_frame, sample_indices
from nexara.model_manifest import ModelManifest, feature_config

if TYPE_CHECKING:
    from nexara.backbones.spec import ClipSpec

logger = logging.getLogger(__name__)

SIGNAL_SAMPLES = 5  # small frames kept per cell for the black / frozen check
_SIGNAL_SIZE_HW = (36, 48)
_CUT_THUMB_WH = (80, 60)
_CUT_HISTORY = 10  # frame-pair differences whose median is "recent"
# The windows' own sampling rule: exact slots (the reader already sampled the source).
_SLOT_TOLERANCE_S = 1e-9
# A clip model's windows are cut from every source frame (offline sampling picks frames by index at the
# source rate); a source faster than this is read at this rate instead.
CLIP_READER_MAX_FPS = 120.0
_FRAME_DT_HISTORY = 32  # frame intervals whose median is the source's frame interval

Grid = GridSpec | Sequence[CellBox] | str


@dataclass(frozen=True, slots=True)
class LiveModel:
    """What the stream needs to know of the model: frames per window, input size, motion spec, and for
    a model on a clip backbone its clip spec (windows of ``clip.num_frames`` frames at
    ``clip.decode_size_hw``, cut as training cut them)."""

    frames_per_window: int
    size_hw: tuple[int, int]
    resize: str
    motion: Any | None  # nexara.motion.MotionSpec when a member reads motion
    clip: ClipSpec | None = None

    @classmethod
    def from_manifest(cls, man: ModelManifest) -> LiveModel:
        """Built from the manifest's one feature config (which checks the motion and clip spec hashes)."""
        fc = feature_config(man)
        if fc.clip is not None:
            return cls(fc.clip.num_frames, fc.clip.decode_size_hw, "center_crop", fc.motion, fc.clip)
        return cls(fc.frames_per_clip, fc.size_hw, fc.resize, fc.motion)

    def check_windows(self, windows: WindowsConfig) -> None:
        """A clip model's windows last what its training windows lasted: refuse another ``window_s``."""
        if self.clip is not None and abs(self.clip.window_s - windows.window_s) > 1e-9:
            raise ModelError(
                f"the model was trained on windows of {self.clip.window_s:g} s ({self.clip.describe()}) but "
                f"windows.window_s is {windows.window_s:g}: set windows.window_s to {self.clip.window_s:g}"
            )

    def reader_fps(self, window_s: float) -> float:
        """The rate the source is read at: enough for the frame ring and for the motion statistics (a
        clip model: every source frame, up to :data:`CLIP_READER_MAX_FPS`)."""
        if self.clip is not None:
            return CLIP_READER_MAX_FPS
        rates = [self.frames_per_window / window_s]
        if self.motion is not None:
            rates.append(float(self.motion.fps))
        return max(rates)


class CutGuard:
    """Tells a cut from motion on consecutive gray frames."""

    def __init__(self, min_diff: float, ratio: float) -> None:
        self.min_diff = min_diff
        self.ratio = ratio
        self._prev: np.ndarray | None = None
        self._diffs: deque[float] = deque(maxlen=_CUT_HISTORY)

    def is_cut(self, gray: np.ndarray) -> bool:
        thumb = cv2.resize(gray, _CUT_THUMB_WH, interpolation=cv2.INTER_AREA).astype(np.int16)
        prev, self._prev = self._prev, thumb
        if prev is None:
            return False
        diff = float(np.abs(thumb - prev).mean())
        recent = float(np.median(self._diffs)) if self._diffs else 0.0
        self._diffs.append(diff)
        return diff > self.min_diff and diff > self.ratio * max(recent, 1.0)


class ClipRing:
    """One cell's source frames over the last window, at the clip spec's decode size, and the windows of
    a clip model cut from them as :func:`nexara.media.window_indices` cuts a file offline.

    Offline, a window spans ``round(window_s * fps)`` consecutive source frames, the first window starts
    at frame 0, the next ones every ``round(hop_s * fps)`` frames, and ``num_frames`` of the span's
    frames are taken at :func:`nexara.media.sample_indices` positions. Here the span is the frames less
    than ``window_s - dt/2`` before the newest one (``dt``: the median source frame interval, so for a
    constant frame rate the same count, and a stream that drops frames still spans ``window_s``); the
    first window is cut at the frame that completes the first span, the next ones at the frame within
    half an interval of ``stride_s`` after the previous cut. On a constant-rate source read from its
    first frame, window k holds exactly the frames offline window k holds (frame ids are source frame
    indices); only the pixels differ, by the RGB-then-resize conversion (:func:`resize_frame` of the
    decoded RGB frame here, one swscale call from the decoded YUV frame offline)."""

    def __init__(self, spec: ClipSpec) -> None:
        self.spec = spec
        self.frames: deque[tuple[int, float, np.ndarray]] = deque()
        self._dts: deque[float] = deque(maxlen=_FRAME_DT_HISTORY)
        self._next_id = 0
        self.first_t: float | None = None
        self._last_cut_t: float | None = None

    @property
    def frame_dt(self) -> float:
        """The source's frame interval (median of the recent ones); 0.0 before two frames."""
        return float(np.median(self._dts)) if self._dts else 0.0

    def push(self, crop: np.ndarray, t: float) -> None:
        small = resize_frame(np.ascontiguousarray(crop), self.spec.decode_size_hw, "center_crop")
        if self.frames:
            self._dts.append(t - self.frames[-1][1])
        else:
            self.first_t = t
        self.frames.append((self._next_id, t, small))
        self._next_id += 1
        horizon = t - self.spec.window_s - 2 * self.frame_dt
        while self.frames[0][1] < horizon:
            self.frames.popleft()

    def due(self, t: float, stride_s: float) -> bool:
        """Whether the frame at ``t`` (the newest pushed) ends the next window."""
        dt = self.frame_dt
        if dt <= 0 or self.first_t is None:
            return False
        if self._last_cut_t is None:  # the first span is complete: its first frame is the stream's first
            return t - self.first_t >= self.spec.window_s - 1.5 * dt - 1e-9
        return t - self._last_cut_t >= stride_s - 0.5 * dt - 1e-9

    def cut(self, t: float) -> tuple[tuple[int, ...], dict[int, np.ndarray], tuple[float, ...]]:
        """The window ending at the newest frame ``t``: (frame ids, frames by id, frame times)."""
        limit = self.spec.window_s - 0.5 * self.frame_dt
        span = [f for f in self.frames if t - f[1] < limit]
        picked = [span[int(i)] for i in sample_indices(len(span), self.spec.num_frames)]
        self._last_cut_t = t
        return (
            tuple(fid for fid, _, _ in picked),
            {fid: img for fid, _, img in picked},
            tuple(ft for _, ft, _ in picked),
        )


class CellWindower:
    """One cell's frames -> windows (see the module docstring). Fed by one thread; :meth:`set_hot`
    may be called from another (it only swaps the hop)."""

    def __init__(
        self,
        index: int,
        camera_id: str,
        box: CellBox,
        model: LiveModel,
        windows: WindowsConfig,
        no_signal_check_s: float,
    ) -> None:
        self.index = index
        self.camera_id = camera_id
        self.box = box
        self.model = model
        self.windows = windows
        model.check_windows(windows)
        self.clip = ClipRing(model.clip) if model.clip is not None else None
        t = model.frames_per_window
        self.frames: deque[tuple[int, float, np.ndarray]] = deque(maxlen=t)
        self._frame_sampler = FpsSampler(t / windows.window_s, tolerance_s=_SLOT_TOLERANCE_S)
        self.motion: MotionBuffer | None = None
        self._motion_sampler: FpsSampler | None = None
        self._min_motion_frames = 0
        if model.motion is not None:
            fps = float(model.motion.fps)
            self.motion = MotionBuffer(model.motion, max_frames=round(windows.window_s * fps) + 1)
            self._motion_sampler = FpsSampler(fps, tolerance_s=_SLOT_TOLERANCE_S)
            self._min_motion_frames = max(2, round(windows.window_s * fps / 2))
        self._signal_sampler = FpsSampler(SIGNAL_SAMPLES / no_signal_check_s, tolerance_s=_SLOT_TOLERANCE_S)
        self._signal_frames: deque[np.ndarray] = deque(maxlen=SIGNAL_SAMPLES)
        self._cuts = CutGuard(windows.cut_min_diff, windows.cut_ratio) if windows.cut_guard else None
        self.stride_s = windows.stride_s
        self.signal: Signal = "ok"
        self.first_t: float | None = None
        self.next_window_t: float | None = None
        self._next_frame_id = 0
        self._seq = 0
        self.frames_analysed = 0
        self.windows_made = 0
        self.cuts = 0

    def set_hot(self, hot: bool) -> None:
        """Sample at ``alert_stride_s`` while the cell scores above ``pre_alert`` or alerts."""
        self.stride_s = self.windows.alert_stride_s if hot else self.windows.stride_s

    def reset_motion(self) -> None:
        """After a reconnect gap: flow across it would be noise."""
        if self.motion is not None:
            self.motion.reset()

    def push(self, crop: np.ndarray, t: float) -> WindowInfo | NoSignal | None:
        """Feed the cell's crop of the frame at stream time ``t``; returns the window it completes."""
        if self.first_t is None:
            self.first_t = t
            self.next_window_t = t + self.windows.window_s
        if self._signal_sampler.keep(t):
            small = cv2.resize(crop, (_SIGNAL_SIZE_HW[1], _SIGNAL_SIZE_HW[0]), interpolation=cv2.INTER_AREA)
            self._signal_frames.append(small)
            if len(self._signal_frames) == SIGNAL_SAMPLES:
                self.signal = cell_signal(list(self._signal_frames))
        if self.clip is not None:
            self.clip.push(crop, t)
            if self._motion_sampler is not None and self.clip.frame_dt > 0:
                # every source frame comes here: pick motion frames as offline decoding does (half a
                # source frame of timestamp rounding), not on exact slots
                self._motion_sampler.tolerance_s = 0.5 * self.clip.frame_dt
        if self.motion is not None and self._motion_sampler is not None and self._motion_sampler.keep(t):
            gray = to_gray(crop, self.motion.spec)
            if self._cuts is not None and self._cuts.is_cut(gray):
                self.cuts += 1
                self.motion.reset()  # flow across a cut is not motion
            self.motion.push(gray, t)
            self.frames_analysed += 1
        motion_ready = self.motion is None or len(self.motion) >= self._min_motion_frames
        if self.clip is not None:
            if self.motion is None:
                self.frames_analysed += 1
            if self.clip.due(t, self.stride_s) and motion_ready:
                return self._cut_window(t, self.clip.cut(t))
            return None
        if self._frame_sampler.keep(t):
            small = resize_frame(np.ascontiguousarray(crop), self.model.size_hw, self.model.resize)  # type: ignore[arg-type]
            self.frames.append((self._next_frame_id, t, small))
            self._next_frame_id += 1
            if self.motion is None:
                self.frames_analysed += 1
        assert self.next_window_t is not None
        if t + 1e-9 >= self.next_window_t and len(self.frames) == self.frames.maxlen and motion_ready:
            self.next_window_t = t + self.stride_s
            ids = tuple(fid for fid, _, _ in self.frames)
            return self._cut_window(t, (ids, {fid: img for fid, _, img in self.frames}, ()))
        return None

    def _cut_window(
        self, t: float, picked: tuple[tuple[int, ...], dict[int, np.ndarray], tuple[float, ...]]
    ) -> WindowInfo | NoSignal:
        seq = self._seq
        self._seq += 1
        self.windows_made += 1
        start = max(t - self.windows.window_s, self.first_t or 0.0)
        if self.signal != "ok":
            return NoSignal(self.index, seq, start, t, self.signal)
        frame_ids, frames, frame_times = picked
        return WindowInfo(
            self.index,
            seq,
            start,
            t,
            frame_ids=frame_ids,
            frames=frames,
            motion=self._motion_features(frame_times),
            created_s=time.monotonic(),
            frame_times_s=frame_times,
        )

    def _motion_features(self, frame_times: tuple[float, ...]) -> np.ndarray | None:
        """The window's motion statistics: the buffered frames, or for a clip model's window only those
        from its first frame on (as :func:`nexara.motion.window_motion` computes a training window's)."""
        if self.motion is None:
            return None
        if not frame_times:
            return self.motion.features()
        n = int(np.count_nonzero(self.motion.times >= frame_times[0] - 1e-6))
        return self.motion.features(max(n, 1)) if len(self.motion) else self.motion.features()


def layout_cells(
    grid: Grid,
    frames: Sequence[np.ndarray],
    source_id: str,
    cell_ids: Sequence[str] | None = None,
) -> list[tuple[str, CellBox]]:
    """(camera id, box) of each cell of a source whose first frames are ``frames`` (one is enough
    unless the grid is detected: ``grid="auto"``)."""
    h, w = frames[-1].shape[:2]
    if isinstance(grid, GridSpec):
        boxes = grid.cell_boxes(w, h)
    elif grid == "auto":
        boxes = detect_grid(list(frames))
        rows, cols = grid_shape(boxes)
        logger.info("source %s: detected a %dx%d grid", source_id, rows, cols)
    elif isinstance(grid, str):
        raise InvalidInputError(f"grid must be a GridSpec, a list of cell boxes or 'auto', got {grid!r}")
    else:
        boxes = list(grid)
        for b in boxes:
            if not (0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h):
                raise InvalidInputError(f"cell box {b} lies outside the {w}x{h} frame of source {source_id}")
    if cell_ids is not None and len(cell_ids) != len(boxes):
        raise InvalidInputError(f"source {source_id}: {len(cell_ids)} cell ids for {len(boxes)} cells")
    if cell_ids:
        return list(zip(cell_ids, boxes, strict=True))
    if len(boxes) == 1:
        return [(source_id, boxes[0])]
    return [(f"{source_id}-r{b.row}c{b.col}", b) for b in boxes]
