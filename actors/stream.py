"""The live path of one source (a camera, a file, or a recording of a monitor wall), without Ray.

:class:`SourceWorker` only wires the stages together: a reader thread decodes the source
(:class:`actors.sources.StreamReader`), splits each frame into cells (:mod:`actors.grid`) and feeds each
cell's windowing stage (:mod:`actors.windowing`, frames -> ``WindowInfo``); windows are scored on the
event loop (:mod:`actors.scoring`, -> ``Verdict | Dropped | Failed``); every result reaches the alert
stage (:mod:`actors.alerts`: window order -> confirmation -> evidence clip -> event log -> sinks), whose
verdicts set each cell's hop (adaptive sampling). :meth:`SourceWorker.status` is a typed
:class:`~actors.records.SourceStatus`. :func:`worker_from_config` builds a worker from a camera resolved
by the config schema (:meth:`nexara.config.NexaraConfig.resolve_camera`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from actors.alerts import AlertStage
from actors.cascade import Gate, check_gate_threshold
from actors.confirmation import EndReason
from actors.event_log import EventLog
from actors.grid import CellBox, GridSpec
from actors.quality import QualityMonitor, ReferenceStore
from actors.records import CellStatus, SourceStatus, Verdict, WindowInfo, WindowResult
from actors.scoring import Embed, Scorer, Vote
from actors.sinks import Sink
from actors.sources import LiveFrame, SourceConfig, StreamReader
from actors.stream_sinks import WEBHOOK_DEAD_LETTER, WEBHOOK_DELIVERED, mqtt_sink, webhook_sink
from actors.thumbnails import LatestFrames
from actors.windowing import CellWindower, Grid, LiveModel, layout_cells
from nexara.config import ConfirmationSection, GridConfig, ResolvedCamera, WindowsConfig
from nexara.errors import InvalidInputError

__all__ = ["LiveModel", "SourceWorker", "runs_folder", "worker_from_config"]

logger = logging.getLogger(__name__)

_AUTO_GRID_FRAMES = 8  # frames (about a second apart at most) looked at to detect a wall's grid


class Recorder(Protocol):
    def start_stream(self, stream: Any) -> None: ...
    def push(self, packet: Any, time_s: float) -> None: ...
    def request(self, event_id: str, start_s: float, crop: tuple[int, int, int, int] | None = None) -> Any: ...
    def flush(self) -> None: ...


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
        windows: WindowsConfig | None = None,
        confirmation: ConfirmationSection | None = None,
        grid: Grid | None = None,
        cell_ids: Sequence[str] | None = None,
        no_signal_check_s: float = 2.0,
        event_log: EventLog | None = None,
        sinks: Sequence[Sink] = (),
        recorder: Recorder | None = None,
        gate: Gate | None = None,
        quality: QualityMonitor | None = None,
    ) -> None:
        self.source_id = source_id
        self.quality = quality
        self.source = source
        self.model = model
        self.windows = windows or WindowsConfig()  # type: ignore[call-arg]
        self.confirmation = confirmation or ConfirmationSection()  # type: ignore[call-arg]
        model.check_windows(self.windows)
        if gate is not None:
            check_gate_threshold(gate.threshold, self.confirmation.enter_threshold, source_id)
        self.grid: Grid = grid if grid is not None else GridSpec(1, 1)
        if isinstance(self.grid, str) and self.grid != "auto":
            raise InvalidInputError(f"grid must be a GridSpec, a list of cell boxes or 'auto', got {self.grid!r}")
        self.cell_ids = list(cell_ids) if cell_ids else None
        self.no_signal_check_s = no_signal_check_s
        self.recorder = recorder
        self._recorder_lock = threading.Lock()
        self.cells: list[CellWindower] = []
        self.frames = LatestFrames()  # each cell's latest analysed picture, for the console's wall tiles
        self.alerts = AlertStage(
            source_id, log=event_log, sinks=sinks, request_clip=self._request_clip if recorder else None
        )
        # A file read as fast as possible waits for room; a live source drops its oldest window.
        backpressure = source.pacing == "fast" and source.reconnect is not True and "://" not in source.url
        self.scorer = Scorer(
            embed,
            vote,
            self.windows,
            frames_per_window=model.frames_per_window,
            backpressure=backpressure,
            on_result=self._on_result,
            camera_ids=lambda i: self.cells[i].camera_id,
            clip=model.clip is not None,
            gate=gate,
        )
        self.state = "created"
        self.error: str | None = None
        self.started_unix_s: float | None = None
        self.finished = asyncio.Event()
        self._stop = threading.Event()
        self._reader: StreamReader | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_done = False
        self._end_reason: EndReason = "stream_end"
        self._last_t = 0.0
        self._auto_frames: list[LiveFrame] = []
        self._frames_in = 0

    @property
    def recent_events(self) -> Sequence[dict[str, Any]]:
        return self.alerts.recent_events

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the reader thread; windows are scored on ``loop`` (the running loop by default)."""
        if self._thread is not None:
            raise RuntimeError(f"source {self.source_id} already started")
        self._loop = loop or asyncio.get_running_loop()
        self._reader = StreamReader(
            self.source,
            fps=self.model.reader_fps(self.windows.window_s),
            on_packet=self._on_packet if self.recorder else None,
            on_connect=self._on_connect,
            stop=self._stop,
        )
        self.state = "starting"
        self._thread = threading.Thread(target=self._read, name=f"reader-{self.source_id}", daemon=True)
        self._thread.start()

    def stop(self, reason: EndReason = "stream_end") -> None:
        """Stop reading; queued windows are still scored and every open alert is ended with ``reason``
        (``shutdown`` when the app stops, ``removed`` when the camera is deleted)."""
        self._end_reason = reason
        self._stop.set()
        self.scorer.wake()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver or dead-letter what the sinks still hold (blocking: call it off the event loop)."""
        self.alerts.close(timeout_s)

    async def wait(self, timeout_s: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.finished.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # --- reader thread -------------------------------------------------------------------------

    def _on_connect(self, stream: Any) -> None:
        self.state = "streaming"
        for cell in self.cells:
            cell.reset_motion()
        if self.recorder is not None:
            with self._recorder_lock:
                self.recorder.start_stream(stream)

    def _on_packet(self, packet: Any, time_s: float) -> None:
        assert self.recorder is not None
        with self._recorder_lock:
            self.recorder.push(packet, time_s)

    def _request_clip(self, event_id: str, start_s: float) -> str | None:
        assert self.recorder is not None
        crop = None
        if len(self.cells) > 1:  # a wall: the clip shows the alerting cell, not the whole wall
            for w, a in zip(self.cells, self.alerts.cells, strict=False):
                if a.confirmer.active_event_id == event_id:
                    crop = (w.box.x0, w.box.y0, w.box.x1, w.box.y1)
                    break
        with self._recorder_lock:
            path = self.recorder.request(event_id, start_s, crop=crop)
        return None if path is None else str(path)

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
                    self._init_cells([f.rgb for f in self._auto_frames])
                except Exception as exc:
                    self.error = self.error or f"grid: {exc}"
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._reader_finished)
            except RuntimeError:  # loop closed (actor killed)
                pass

    def _init_cells(self, frames: list[np.ndarray]) -> None:
        for i, (camera_id, box) in enumerate(layout_cells(self.grid, frames, self.source_id, self.cell_ids)):
            self.cells.append(CellWindower(i, camera_id, box, self.model, self.windows, self.no_signal_check_s))
            self.alerts.add_cell(camera_id, self.confirmation, self.windows.pre_alert)
            if self.quality is not None:
                self.quality.add_camera(camera_id)

    def _on_frame(self, frame: LiveFrame) -> None:
        if not self.cells:
            if self.grid == "auto":
                self._auto_frames.append(frame)
                if len(self._auto_frames) < _AUTO_GRID_FRAMES:
                    return
                self._init_cells([f.rgb for f in self._auto_frames])
                pending, self._auto_frames = self._auto_frames, []
                for f in pending:
                    self._on_cells(f)
                return
            self._init_cells([frame.rgb])
        self._on_cells(frame)

    def _on_cells(self, frame: LiveFrame) -> None:
        for cell in self.cells:
            b = cell.box
            crop = frame.rgb[b.y0 : b.y1, b.x0 : b.x1]
            self.frames.put(cell.index, crop)
            out = cell.push(crop, frame.time_s)
            if isinstance(out, WindowInfo):
                self.scorer.reserve(self._stop)
                self._post(self.scorer.enqueue, out)
            elif out is not None:
                self._post(self._on_result, out)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    # --- event loop ------------------------------------------------------------------------------

    def _on_result(self, result: WindowResult) -> None:
        if self.quality is not None and isinstance(result, Verdict):
            self.quality.push(self.cells[result.cell].camera_id, result.probability)
        hot = self.alerts.receive(result)
        if hot is not None:
            self.cells[result.cell].set_hot(hot)
        self._maybe_finish()

    def _reader_finished(self) -> None:
        self._reader_done = True
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if not self._reader_done or not self.scorer.idle or self.finished.is_set():
            return
        self.alerts.finish(self._last_t, self._end_reason)
        if self.recorder is not None:
            with self._recorder_lock:
                try:
                    self.recorder.flush()
                except Exception as exc:
                    logger.error("source %s: evidence clips not written: %s", self.source_id, exc)
        self.state = "failed" if self.error and not self._frames_in else "ended"
        self.finished.set()

    # --- status ------------------------------------------------------------------------------------

    def frame_jpeg(self, camera_id: str) -> bytes | None:
        """The latest analysed picture of a cell (``camera_id``: the source or a wall cell) as a small
        JPEG; None when the camera is not one of this source's or no frame has come yet."""
        for cell in self.cells:
            if cell.camera_id == camera_id:
                return self.frames.jpeg(cell.index)
        return None

    def status(self) -> SourceStatus:
        r = self._reader.stats() if self._reader is not None else {}
        state = self.state
        if state == "streaming" and r.get("state") in ("backoff", "connecting"):
            state = str(r["state"])
        elapsed = None
        if self.started_unix_s is not None:
            elapsed = max(time.time() - self.started_unix_s, 1e-6)
        cells = []
        for w, a in zip(self.cells, self.alerts.cells, strict=False):
            cells.append(
                CellStatus(
                    camera_id=w.camera_id,
                    box=(w.box.x0, w.box.y0, w.box.x1, w.box.y1),
                    signal=w.signal,
                    alert_active=a.confirmer.active,
                    active_event_id=a.confirmer.active_event_id,
                    fps_analysed=None if elapsed is None else round(w.frames_analysed / elapsed, 2),
                    frames_analysed=w.frames_analysed,
                    windows_made=w.windows_made,
                    windows_scored=a.windows_scored,
                    windows_dropped=a.windows_dropped,
                    windows_failed=a.windows_failed,
                    windows_no_signal=a.windows_no_signal,
                    windows_gated=self.scorer.gated.get(w.index, 0),
                    cuts=w.cuts,
                    stride_s=w.stride_s,
                    last_score=a.last_score,
                    last_window_end_s=a.last_window_end_s,
                    events=a.events,
                    alerts=a.alerts,
                    quality=None if self.quality is None else self.quality.summary(w.camera_id),
                )
            )
        return SourceStatus(
            source_id=self.source_id,
            url=self.source.url,
            state=state,
            error=self.error,
            fps_in=r.get("input_fps"),
            frames_in=self._frames_in,
            stream_time_s=round(self._last_t, 3),
            connects=r.get("connects", 0),
            reconnects=r.get("reconnects", 0),
            corrupt_packets=r.get("corrupt_packets", 0),
            queued=len(self.scorer.queue),
            in_flight=self.scorer.in_flight,
            started_unix_s=self.started_unix_s,
            cells=tuple(cells),
        )


# --- construction from the resolved config --------------------------------------------------------


def runs_folder(run_dir: Path, sinks_run_dir: str) -> Path:
    """The folder of live runs (``sinks.run_dir``) when ``run_dir`` is one of its runs, else ``run_dir``
    alone (a run folder given elsewhere): what retention prunes (never beside a foreign run folder) and
    where drift references outlive a run. A relative ``sinks.run_dir`` is matched against the run's
    parents, since actors run in Ray's working folder."""
    runs = Path(sinks_run_dir)
    parent = run_dir.parent
    if runs.is_absolute():
        return parent if parent == runs.resolve() else run_dir
    tail = runs.parts
    return parent if tail and parent.parts[-len(tail) :] == tail else run_dir


def grid_of(g: GridConfig) -> Grid:
    """The windowing's grid for a camera's ``grid`` section."""
    if g.boxes:
        return [CellBox(i // g.cols, i % g.cols, x, y, x + w, y + h) for i, (x, y, w, h) in enumerate(g.boxes)]
    if g.mode == "auto":
        return "auto"
    return GridSpec(g.rows, g.cols, g.margin_px)


def worker_from_config(
    camera: ResolvedCamera,
    *,
    run_dir: str,
    model: LiveModel,
    embed: Embed,
    vote: Vote,
    extra_sinks: Sequence[Sink] = (),
    gate: Gate | None = None,
    model_version: str = "unknown",
) -> SourceWorker:
    """A :class:`SourceWorker` for a resolved camera: event log, evidence clips, webhook and MQTT sinks
    (files inside ``run_dir``), its quality monitor (drift references kept per ``model_version``);
    ``gate``: the cascade's gate (``serve.cascade``), if any."""
    from actors.recovery import close_interrupted, source_cameras, undelivered

    run = Path(run_dir)
    sinks_cfg = camera.sinks
    sinks: list[Sink] = list(extra_sinks)
    event_log = EventLog(run / sinks_cfg.event_log)
    g = camera.camera.grid
    # a previous actor of this source died (killed, or its `nexara watch` was): its incidents left open are
    # ended ("interrupted"), and what its webhook had not delivered is sent first (actors/recovery.py)
    mine = source_cameras(camera.id, g.cell_ids)
    closed = close_interrupted(event_log, mine)
    hook = None
    if sinks_cfg.webhook is not None:
        hook = webhook_sink(sinks_cfg.webhook, run)
        sinks.append(hook)
        for data in undelivered(event_log, mine, run / WEBHOOK_DELIVERED, run / WEBHOOK_DEAD_LETTER, camera.id):
            hook.submit(data)
    if sinks_cfg.mqtt is not None:
        sinks.append(mqtt_sink(sinks_cfg.mqtt, camera))
    for data in closed:
        for sink in sinks:
            if sink is not hook:  # the webhook got them above, with the rest of what it had not delivered
                sink.submit({**data, "source_id": camera.id})
    recorder = None
    if sinks_cfg.clips:
        from actors.recorder import ClipRecorder

        recorder = ClipRecorder(
            run / "clips", pre_s=sinks_cfg.clip_pre_s, post_s=sinks_cfg.clip_post_s, margin_s=camera.evidence_lag_s
        )
    q = camera.quality
    quality = QualityMonitor(
        q,
        log=event_log,
        store=ReferenceStore(q.drift_reference_dir or runs_folder(run, camera.sinks.run_dir) / "drift-reference"),
        model_version=model_version,
    )
    return SourceWorker(
        camera.id,
        SourceConfig.from_camera(camera),
        model=model,
        embed=embed,
        vote=vote,
        windows=camera.windows,
        confirmation=camera.confirmation,
        grid=grid_of(g),
        cell_ids=g.cell_ids,
        no_signal_check_s=g.no_signal_check_s,
        event_log=event_log,
        sinks=sinks,
        recorder=recorder,
        gate=gate,
        quality=quality,
    )
