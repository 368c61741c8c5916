"""The live path of one source (a camera, a file, or a recording of a monitor wall), without Ray.

A reader thread decodes the source (:class:`actors.sources.StreamReader`), splits each frame into cells
(:mod:`actors.grid`), feeds every cell's motion buffer (flow computed once per frame pair) and its ring of
model-size frames, and cuts a window of T frames every ``stride`` seconds. The event loop scores windows
through two async callables (the Serve backbone and voting-ensemble handles in production, in-process
models in tests), with at most ``max_in_flight`` windows scoring and ``max_queued`` waiting: a live source
drops the OLDEST waiting window (counted) rather than queueing without bound; a file read as fast as
possible waits for room instead (nothing to drop, nothing falls behind). Each frame goes through the
backbone once: features are cached per frame and shared by the overlapping windows.

Verdicts reach each cell's :class:`~actors.confirmation.Confirmer` in window order; its events are written
to the event log first (durable), then handed to the other sinks. An alert start requests an evidence clip
from the recorder, whose path every event of that alert carries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from actors.confirmation import AlertEvent, ConfirmationConfig, Confirmer
from actors.event_log import EventLog
from actors.grid import CellBox, GridSpec, cell_signal, detect_grid, grid_shape
from actors.motion_window import MotionBuffer, to_gray
from actors.sources import LiveFrame, SourceConfig, StreamReader
from nexara.media import resize_frame
from nexara.model_manifest import ModelManifest

logger = logging.getLogger(__name__)

Embed = Callable[[np.ndarray], Awaitable[np.ndarray]]
Vote = Callable[[np.ndarray, "np.ndarray | None"], Awaitable[dict[str, Any]]]

_DROPPED = "dropped"
_FAILED = "failed"
_SKIPPED = "no_signal"
_AUTO_GRID_FRAMES = 8  # frames (about a second apart at most) looked at to detect a wall's grid
_SIGNAL_SAMPLES = 5  # small frames kept per cell for the black / frozen check
_SIGNAL_SIZE = (36, 48)


class Sink(Protocol):
    def submit(self, event: Mapping[str, Any]) -> None: ...


class Recorder(Protocol):
    def start_stream(self, stream: Any) -> None: ...
    def push(self, packet: Any, time_s: float) -> None: ...
    def request(self, event_id: str, start_s: float) -> Any: ...
    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveModel:
    """What the stream needs to know of the model: frames per window, input size, motion spec."""

    frames_per_window: int
    size_hw: tuple[int, int]
    resize: str
    motion: Any | None  # nexara.motion.MotionSpec when a member reads motion

    @classmethod
    def from_manifest(cls, man: ModelManifest) -> LiveModel:
        motion = None
        if any(m.input == "motion" for m in man.members):
            from nexara.errors import ModelError
            from nexara.motion import MotionSpec

            motion = MotionSpec()
            if man.motion is None or man.motion.hash != motion.hash():
                raise ModelError(
                    f"model {man.version} was trained on motion statistics "
                    f"{man.motion.hash if man.motion else None}; this build computes {motion.hash()}"
                )
        return cls(man.frames_per_clip, tuple(man.preprocessing.size_hw), man.preprocessing.resize, motion)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class WindowSettings:
    window_s: float = 2.0
    stride_s: float = 1.0
    alert_stride_s: float = 0.5
    pre_alert: float = 0.25
    max_in_flight: int = 2
    max_queued: int = 4
    request_timeout_s: float = 60.0
    max_attempts: int = 6
    cut_guard: bool = True
    cut_min_diff: float = 12.0
    cut_ratio: float = 4.0

    @classmethod
    def from_config(cls, cfg: Any) -> WindowSettings:
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})


@dataclass(slots=True)
class _Window:
    cell: int
    seq: int
    start_s: float
    end_s: float
    frame_ids: list[int]
    frames: dict[int, np.ndarray]
    motion: np.ndarray | None
    created: float


@dataclass(slots=True)
class _Ticker:
    """Picks the first frame at or after each 1/rate slot."""

    rate: float
    next_t: float | None = None

    def take(self, t: float) -> bool:
        if self.next_t is None:
            self.next_t = t
        if t + 1e-9 < self.next_t:
            return False
        slots = math.floor((t - self.next_t) * self.rate + 1e-9) + 1
        self.next_t += slots / self.rate
        return True


@dataclass
class CellState:
    index: int
    camera_id: str
    box: CellBox
    confirmer: Confirmer
    motion: MotionBuffer | None
    frames: deque[tuple[int, float, np.ndarray]]
    stride_s: float
    motion_ticker: _Ticker
    frame_ticker: _Ticker
    first_t: float | None = None
    next_window_t: float | None = None
    next_frame_id: int = 0
    seq: int = 0
    next_seq: int = 0
    done: dict[int, Any] = field(default_factory=dict)
    cache: dict[int, np.ndarray] = field(default_factory=dict)
    pending: dict[int, asyncio.Future[np.ndarray]] = field(default_factory=dict)
    signal_frames: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=_SIGNAL_SAMPLES))
    signal_ticker: _Ticker | None = None
    signal: str = "ok"
    last_score: float | None = None
    last_window_end_s: float | None = None
    frames_analysed: int = 0
    windows_made: int = 0
    windows_scored: int = 0
    windows_dropped: int = 0
    windows_failed: int = 0
    windows_skipped: int = 0
    events: int = 0
    alerts: int = 0
    cuts: int = 0
    prev_thumb: np.ndarray | None = None
    diffs: deque[float] = field(default_factory=lambda: deque(maxlen=10))


class SourceWorker:
    """Runs one source: reader thread + windows scored on ``loop`` + confirmation + sinks."""

    def __init__(
        self,
        source_id: str,
        source: SourceConfig,
        *,
        model: LiveModel,
        embed: Embed,
        vote: Vote,
        windows: WindowSettings | None = None,
        confirmation: ConfirmationConfig | None = None,
        grid: GridSpec | Sequence[CellBox] | str | None = None,
        cell_ids: Sequence[str] | None = None,
        no_signal_check_s: float = 2.0,
        event_log: EventLog | None = None,
        sinks: Sequence[Sink] = (),
        recorder: Recorder | None = None,
    ) -> None:
        self.source_id = source_id
        self.source = source
        self.model = model
        self.embed = embed
        self.vote = vote
        self.settings = windows or WindowSettings()
        self.confirmation = confirmation or ConfirmationConfig()
        self.grid = grid if grid is not None else GridSpec(1, 1)
        if isinstance(self.grid, str) and self.grid != "auto":
            raise ValueError(f"grid must be a GridSpec, a list of cell boxes or 'auto', got {self.grid!r}")
        self.cell_ids = list(cell_ids) if cell_ids else None
        self.no_signal_check_s = no_signal_check_s
        self.event_log = event_log
        self.sinks = list(sinks)
        self.recorder = recorder
        self.cells: list[CellState] = []
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=200)
        self.clip_paths: dict[str, str] = {}
        self.state = "created"
        self.error: str | None = None
        self.started_unix_s: float | None = None
        self.finished = asyncio.Event()
        self._queue: deque[_Window] = deque()
        self._backlog = 0  # windows posted by the reader and not yet dispatched or dropped
        self._in_flight = 0
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._reader: StreamReader | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_done = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._recorder_lock = threading.Lock()
        self._last_t = 0.0
        self._auto_frames: list[LiveFrame] = []
        self._frames_in = 0
        self._backpressure = source.pacing == "fast" and source.reconnect is not True and "://" not in source.url

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the reader thread; windows are scored on ``loop`` (the running loop by default)."""
        if self._thread is not None:
            raise RuntimeError(f"source {self.source_id} already started")
        self._loop = loop or asyncio.get_running_loop()
        fps = self._reader_fps()
        self._reader = StreamReader(
            self.source,
            fps=fps,
            on_packet=self._on_packet if self.recorder else None,
            on_connect=self._on_connect,
            stop=self._stop,
        )
        self.state = "starting"
        self._thread = threading.Thread(target=self._read, name=f"reader-{self.source_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; queued windows are still scored and every open alert is ended."""
        self._stop.set()
        with self._room:
            self._room.notify_all()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver or dead-letter what the sinks still hold (blocking: call it off the event loop)."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                try:
                    close(timeout_s)
                except Exception as exc:
                    logger.error("sink %s did not close cleanly: %s", type(sink).__name__, exc)
        if self.event_log is not None:
            self.event_log.close()

    async def wait(self, timeout_s: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.finished.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _reader_fps(self) -> float:
        rates = [self.model.frames_per_window / self.settings.window_s]
        if self.model.motion is not None:
            rates.append(float(self.model.motion.fps))
        return max(rates)

    # --- reader thread -------------------------------------------------------------------------

    def _on_connect(self, stream: Any) -> None:
        self.state = "streaming"
        for cell in self.cells:
            if cell.motion is not None:
                cell.motion.reset()  # flow across a reconnect gap would be noise
        if self.recorder is not None:
            with self._recorder_lock:
                self.recorder.start_stream(stream)

    def _on_packet(self, packet: Any, time_s: float) -> None:
        assert self.recorder is not None
        with self._recorder_lock:
            self.recorder.push(packet, time_s)

    def _read(self) -> None:
        assert self._reader is not None
        try:
            for frame in self._reader.frames():
                if self._stop.is_set():
                    break
                if self.started_unix_s is None:
                    self.started_unix_s = time.time() - frame.time_s
                self._frames_in += 1
                self._last_t = frame.time_s
                self._on_frame(frame)
            rstats = self._reader.stats()
            if rstats.get("state") == "failed":
                self.error = str(rstats.get("last_error"))
        except Exception as exc:  # a source that cannot be read ends this worker, not the process
            logger.error("source %s: %s", self.source_id, exc)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if not self.cells and self._auto_frames:
                try:
                    self._init_cells(self._auto_frames[0].rgb, detect=True)
                except Exception as exc:
                    self.error = self.error or f"grid: {exc}"
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._reader_finished)
            except RuntimeError:  # loop closed (actor killed)
                pass

    def _init_cells(self, rgb: np.ndarray, *, detect: bool = False) -> None:
        h, w = rgb.shape[:2]
        if isinstance(self.grid, GridSpec):
            boxes = self.grid.cell_boxes(w, h)
        elif self.grid == "auto":
            boxes = detect_grid([f.rgb for f in self._auto_frames] or [rgb])
            rows, cols = grid_shape(boxes)
            logger.info("source %s: detected a %dx%d grid", self.source_id, rows, cols)
        else:
            boxes = list(self.grid)  # type: ignore[arg-type]
            for b in boxes:
                if not (0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h):
                    raise ValueError(f"cell box {b} lies outside the {w}x{h} frame of source {self.source_id}")
        if self.cell_ids is not None and len(self.cell_ids) != len(boxes):
            raise ValueError(f"source {self.source_id}: {len(self.cell_ids)} cell ids for {len(boxes)} cells")
        single = len(boxes) == 1
        t = self.model.frames_per_window
        for i, box in enumerate(boxes):
            cid = (
                self.cell_ids[i]
                if self.cell_ids
                else (self.source_id if single else f"{self.source_id}-r{box.row}c{box.col}")
            )
            motion = None
            if self.model.motion is not None:
                n = round(self.settings.window_s * self.model.motion.fps) + 1
                motion = MotionBuffer(self.model.motion, max_frames=n)
            self.cells.append(
                CellState(
                    index=i,
                    camera_id=cid,
                    box=box,
                    confirmer=Confirmer(cid, self.confirmation),
                    motion=motion,
                    frames=deque(maxlen=t),
                    stride_s=self.settings.stride_s,
                    motion_ticker=_Ticker(float(self.model.motion.fps) if self.model.motion else 1.0),
                    frame_ticker=_Ticker(t / self.settings.window_s),
                    signal_ticker=_Ticker(_SIGNAL_SAMPLES / self.no_signal_check_s),
                )
            )

    def _on_frame(self, frame: LiveFrame) -> None:
        if not self.cells:
            if self.grid == "auto":
                self._auto_frames.append(frame)
                if len(self._auto_frames) < _AUTO_GRID_FRAMES:
                    return
                self._init_cells(frame.rgb, detect=True)
                pending, self._auto_frames = self._auto_frames, []
                for f in pending:
                    self._on_cells(f)
                return
            self._init_cells(frame.rgb)
        self._on_cells(frame)

    def _on_cells(self, frame: LiveFrame) -> None:
        import cv2

        for cell in self.cells:
            b = cell.box
            crop = frame.rgb[b.y0 : b.y1, b.x0 : b.x1]
            t = frame.time_s
            if cell.first_t is None:
                cell.first_t = t
                cell.next_window_t = t + self.settings.window_s
            if cell.signal_ticker is not None and cell.signal_ticker.take(t):
                small = cv2.resize(crop, (_SIGNAL_SIZE[1], _SIGNAL_SIZE[0]), interpolation=cv2.INTER_AREA)
                cell.signal_frames.append(small)
                if len(cell.signal_frames) == cell.signal_frames.maxlen:
                    cell.signal = cell_signal(list(cell.signal_frames))
            if cell.motion is not None and cell.motion_ticker.take(t):
                gray = to_gray(crop, cell.motion.spec)
                if self.settings.cut_guard and self._is_cut(cell, gray):
                    cell.cuts += 1
                    cell.motion.reset()  # flow across a cut is not motion
                cell.motion.push(gray, t)
                cell.frames_analysed += 1
            if cell.frame_ticker.take(t):
                small = resize_frame(np.ascontiguousarray(crop), self.model.size_hw, self.model.resize)  # type: ignore[arg-type]
                cell.frames.append((cell.next_frame_id, t, small))
                cell.next_frame_id += 1
                if cell.motion is None:
                    cell.frames_analysed += 1
            assert cell.next_window_t is not None
            if (
                t + 1e-9 >= cell.next_window_t
                and len(cell.frames) == cell.frames.maxlen
                and (cell.motion is None or len(cell.motion) >= self._min_motion_frames)
            ):
                cell.next_window_t = t + cell.stride_s
                self._make_window(cell, t)

    @property
    def _min_motion_frames(self) -> int:
        if self.model.motion is None:
            return 0
        return max(2, round(self.settings.window_s * self.model.motion.fps / 2))

    def _is_cut(self, cell: CellState, gray: np.ndarray) -> bool:
        """A cut: one frame pair far more different than the recent ones (a scene change, a loop seam,
        a DVR switching cameras), as opposed to motion, which builds up over several pairs."""
        import cv2

        thumb = cv2.resize(gray, (80, 60), interpolation=cv2.INTER_AREA).astype(np.int16)
        prev, cell.prev_thumb = cell.prev_thumb, thumb
        if prev is None:
            return False
        diff = float(np.abs(thumb - prev).mean())
        recent = float(np.median(cell.diffs)) if cell.diffs else 0.0
        cell.diffs.append(diff)
        return diff > self.settings.cut_min_diff and diff > self.settings.cut_ratio * max(recent, 1.0)

    def _make_window(self, cell: CellState, t: float) -> None:
        seq = cell.seq
        cell.seq += 1
        cell.windows_made += 1
        start = max(t - self.settings.window_s, cell.first_t or 0.0)
        if cell.signal != "ok":
            self._post(self._finish_window, cell.index, seq, _SKIPPED, start, t)
            return
        motion = None
        if cell.motion is not None:
            motion = cell.motion.features()
        ids = [fid for fid, _, _ in cell.frames]
        window = _Window(
            cell=cell.index,
            seq=seq,
            start_s=start,
            end_s=t,
            frame_ids=ids,
            frames={fid: img for fid, _, img in cell.frames},
            motion=motion,
            created=time.monotonic(),
        )
        with self._room:
            if self._backpressure:
                while self._backlog >= self.settings.max_queued and not self._stop.is_set():
                    self._room.wait(0.5)
            self._backlog += 1
        self._post(self._enqueue, window)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    # --- event loop ------------------------------------------------------------------------------

    def _enqueue(self, window: _Window) -> None:
        with self._room:
            self._queue.append(window)
            while not self._backpressure and len(self._queue) > self.settings.max_queued:
                old = self._queue.popleft()
                self._backlog -= 1
                self.cells[old.cell].windows_dropped += 1
                self._finish_window(old.cell, old.seq, _DROPPED, old.start_s, old.end_s)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self.settings.max_in_flight:
            with self._room:
                window = self._queue.popleft()
                self._backlog -= 1
                self._room.notify_all()
            self._in_flight += 1
            task = asyncio.ensure_future(self._score(window))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._maybe_finish()

    async def _score(self, window: _Window) -> None:
        cell = self.cells[window.cell]
        s = self.settings
        result: Any = _FAILED
        delay = 0.5
        for attempt in range(1, s.max_attempts + 1):
            try:
                feats = await self._features(cell, window)
                result = await asyncio.wait_for(self.vote(feats, window.motion), s.request_timeout_s)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == s.max_attempts:
                    logger.error("%s window %d failed after %d attempts: %s", cell.camera_id, window.seq, attempt, exc)
                else:
                    logger.warning(
                        "%s window %d attempt %d failed (%s); retrying in %.1f s",
                        cell.camera_id, window.seq, attempt, type(exc).__name__, delay,
                    )  # fmt: skip
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 8.0)
        self._in_flight -= 1
        if result == _FAILED:
            cell.windows_failed += 1
        self._finish_window(window.cell, window.seq, result, window.start_s, window.end_s)
        self._dispatch()

    async def _features(self, cell: CellState, window: _Window) -> np.ndarray:
        missing = [i for i in window.frame_ids if i not in cell.cache and i not in cell.pending]
        if missing:
            loop = asyncio.get_running_loop()
            futures = {i: loop.create_future() for i in missing}
            cell.pending.update(futures)
            try:
                batch = np.stack([window.frames[i] for i in missing])
                feats = await asyncio.wait_for(self.embed(batch), self.settings.request_timeout_s)
                feats = np.asarray(feats)
                if feats.shape[0] != len(missing):
                    raise ValueError(f"backbone returned {feats.shape[0]} feature rows for {len(missing)} frames")
            except BaseException as exc:
                for i, fut in futures.items():
                    cell.pending.pop(i, None)
                    if not fut.done():
                        fut.set_exception(exc)
                        fut.exception()  # mark retrieved: other windows retry on their own
                raise
            for i, row in zip(missing, feats, strict=True):
                cell.cache[i] = row
                cell.pending.pop(i, None)
                futures[i].set_result(row)
        rows = []
        for i in window.frame_ids:
            if i in cell.cache:
                rows.append(cell.cache[i])
            elif i in cell.pending:
                rows.append(await asyncio.shield(cell.pending[i]))
            else:  # a frame another window failed to embed: ask again for it alone
                rows.append(np.asarray(await self.embed(window.frames[i][None]))[0])
        oldest_needed = min((fid for fid, _, _ in cell.frames), default=0)
        for i in [i for i in cell.cache if i < oldest_needed - self.model.frames_per_window]:
            del cell.cache[i]
        return np.stack(rows).astype(np.float32)

    def _finish_window(self, index: int, seq: int, result: Any, start_s: float, end_s: float) -> None:
        cell = self.cells[index]
        cell.done[seq] = (result, start_s, end_s)
        while cell.next_seq in cell.done:
            res, w0, w1 = cell.done.pop(cell.next_seq)
            cell.next_seq += 1
            if res == _SKIPPED:
                cell.windows_skipped += 1
                continue
            if not isinstance(res, dict):
                continue
            cell.windows_scored += 1
            p = float(res["violence_probability"])
            cell.last_score = p
            cell.last_window_end_s = w1
            active = cell.confirmer.active
            cell.stride_s = (
                self.settings.alert_stride_s if (p >= self.settings.pre_alert or active) else self.settings.stride_s
            )
            for event in cell.confirmer.push(w0, w1, p):
                self._emit(cell, event)

    def _emit(self, cell: CellState, event: AlertEvent) -> None:
        if event.kind == "start" and self.recorder is not None:
            with self._recorder_lock:
                path = self.recorder.request(event.event_id, event.start_s)
            if path is not None:
                self.clip_paths[event.event_id] = str(path)
        clip = self.clip_paths.get(event.event_id)
        if clip is not None:
            event = replace(event, clip_path=clip)
        data = event.to_dict()
        if self.event_log is not None:
            self.event_log.append(data)  # durable before anyone is told
        data.setdefault("logged_unix_s", time.time())
        data["source_id"] = self.source_id
        cell.events += 1
        if event.kind == "start":
            cell.alerts += 1
        self.recent_events.append(data)
        for sink in self.sinks:
            try:
                sink.submit(data)
            except Exception as exc:  # a broken sink never stops the stream
                logger.error("sink %s failed on %s: %s", type(sink).__name__, event.event_id, exc)

    def _reader_finished(self) -> None:
        self._reader_done = True
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if not self._reader_done or self._queue or self._in_flight or self.finished.is_set():
            return
        for cell in self.cells:
            for event in cell.confirmer.finish(self._last_t):
                self._emit(cell, event)
        if self.recorder is not None:
            with self._recorder_lock:
                try:
                    self.recorder.flush()
                except Exception as exc:
                    logger.error("source %s: evidence clips not written: %s", self.source_id, exc)
        self.state = "failed" if self.error and not self._frames_in else "ended"
        self.finished.set()

    # --- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        r = self._reader.stats() if self._reader is not None else {}
        state = self.state
        if state == "streaming" and r.get("state") in ("backoff", "connecting"):
            state = str(r["state"])
        elapsed = None
        if self.started_unix_s is not None:
            elapsed = max(time.time() - self.started_unix_s, 1e-6)
        cells = []
        for c in self.cells:
            cells.append(
                {
                    "camera_id": c.camera_id,
                    "box": [c.box.x0, c.box.y0, c.box.x1, c.box.y1],
                    "signal": c.signal,
                    "alert_active": c.confirmer.active,
                    "active_event_id": c.confirmer.active_event_id,
                    "fps_analysed": None if elapsed is None else round(c.frames_analysed / elapsed, 2),
                    "frames_analysed": c.frames_analysed,
                    "windows_made": c.windows_made,
                    "windows_scored": c.windows_scored,
                    "windows_dropped": c.windows_dropped,
                    "windows_failed": c.windows_failed,
                    "windows_no_signal": c.windows_skipped,
                    "cuts": c.cuts,
                    "stride_s": c.stride_s,
                    "last_score": c.last_score,
                    "last_window_end_s": c.last_window_end_s,
                    "events": c.events,
                    "alerts": c.alerts,
                }
            )
        return {
            "source_id": self.source_id,
            "url": self.source.url,
            "state": state,
            "error": self.error,
            "fps_in": r.get("input_fps"),
            "frames_in": self._frames_in,
            "stream_time_s": round(self._last_t, 3),
            "connects": r.get("connects", 0),
            "reconnects": r.get("reconnects", 0),
            "corrupt_packets": r.get("corrupt_packets", 0),
            "queued": len(self._queue),
            "in_flight": self._in_flight,
            "windows_dropped": sum(c.windows_dropped for c in self.cells),
            "windows_scored": sum(c.windows_scored for c in self.cells),
            "started_unix_s": self.started_unix_s,
            "cells": cells,
        }


# --- construction from the runtime config ---------------------------------------------------------


def worker_from_config(
    camera: Any,
    cfg: Any,
    *,
    run_dir: str,
    model: LiveModel,
    embed: Embed,
    vote: Vote,
    extra_sinks: Sequence[Sink] = (),
) -> SourceWorker:
    """A :class:`SourceWorker` for ``camera`` (a ``CameraConfig``) under the ``NexaraConfig`` ``cfg``:
    event log, evidence clips and webhook inside ``run_dir``."""
    import os
    from pathlib import Path

    from nexara.config import expand_env

    run = Path(run_dir)
    g = camera.grid
    grid: GridSpec | list[CellBox] | str
    if g.boxes:
        grid = [CellBox(i // g.cols, i % g.cols, x, y, x + w, y + h) for i, (x, y, w, h) in enumerate(g.boxes)]
    elif g.mode == "auto":
        grid = "auto"
    else:
        grid = GridSpec(g.rows, g.cols, g.margin_px)
    source = SourceConfig(
        url=expand_env(camera.url),
        pacing=camera.pacing,
        loop=camera.loop,
        format=camera.format,
        options=dict(camera.options),
        read_timeout_s=cfg.media.read_timeout_s,
        reconnect=camera.reconnect,
        max_reconnects=camera.max_reconnects,
        backoff_initial_s=camera.backoff_initial_s,
        backoff_max_s=camera.backoff_max_s,
    )
    confirmation = ConfirmationConfig(**cfg.confirmation.model_dump())
    sinks: list[Sink] = list(extra_sinks)
    if cfg.sinks.webhook is not None:
        from actors.sinks import WebhookSink

        w = cfg.sinks.webhook
        secret = None
        if w.secret_env:
            secret = os.environ.get(w.secret_env)
            if not secret:
                raise ValueError(f"sinks.webhook.secret_env names {w.secret_env}, which is not set")
        sinks.append(
            WebhookSink(
                expand_env(w.url),
                secret=secret,
                timeout_s=w.timeout_s,
                max_attempts=w.max_attempts,
                backoff_initial_s=w.backoff_initial_s,
                backoff_max_s=w.backoff_max_s,
                dead_letter_path=run / "webhook-dead-letter.jsonl",
            )
        )
    recorder = None
    if cfg.sinks.clips:
        from actors.recorder import ClipRecorder

        w = cfg.windows
        # The reader runs ahead of the verdicts by up to the queued + in-flight windows, and an alert is
        # confirmed up to n windows after its start: keep packets that far back, plus a margin.
        lag_s = w.window_s + (w.max_queued + w.max_in_flight + cfg.confirmation.n) * w.stride_s + 10.0
        recorder = ClipRecorder(run / "clips", pre_s=cfg.sinks.clip_pre_s, post_s=cfg.sinks.clip_post_s, margin_s=lag_s)
    return SourceWorker(
        camera.id,
        source,
        model=model,
        embed=embed,
        vote=vote,
        windows=WindowSettings.from_config(cfg.windows),
        confirmation=confirmation,
        grid=grid,
        cell_ids=g.cell_ids,
        no_signal_check_s=g.no_signal_check_s,
        event_log=EventLog(run / cfg.sinks.event_log),
        sinks=sinks,
        recorder=recorder,
    )
