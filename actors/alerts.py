"""Alerts, the last live stage: window results in, alert events out to the sinks.

Results reach each cell in window order (a retried window can finish after later ones; the later ones
wait for it), so each cell's :class:`~actors.confirmation.Confirmer` sees its windows as they were cut.
An alert start requests an evidence clip (``request_clip``), whose path every event of that alert
carries. Each event goes to the durable sink first (the event log: written and fsynced before anyone
is told, and a failure there is not swallowed), then to the other sinks, whose failures are logged and
never stop the stream. Every sink speaks the one :class:`~actors.sinks.Sink` protocol.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from actors.confirmation import AlertEvent, Confirmer, EndReason
from actors.records import Dropped, Failed, NoSignal, Verdict, WindowResult
from actors.sinks import Sink
from nexara.config import ConfirmationSection

logger = logging.getLogger(__name__)

RequestClip = Callable[[str, float], "str | None"]
_RECENT_EVENTS = 200


class CellAlerts:
    """One cell's results in window order, its confirmer and its counters."""

    def __init__(self, camera_id: str, confirmation: ConfirmationSection, pre_alert: float) -> None:
        self.camera_id = camera_id
        self.confirmer = Confirmer(camera_id, confirmation)
        self.pre_alert = pre_alert
        # member probabilities of the last n windows and of the open alert's peak window (the event log's
        # ``members``): the confirmer sees probabilities only
        self._recent: deque[tuple[float, dict[str, float]]] = deque(maxlen=max(confirmation.n, 1))
        self._peak: tuple[float, dict[str, float]] | None = None
        self._done: dict[int, WindowResult] = {}
        self._next_seq = 0
        self.windows_scored = 0
        self.windows_dropped = 0
        self.windows_failed = 0
        self.windows_no_signal = 0
        self.last_score: float | None = None
        self.last_window_end_s: float | None = None
        self.events = 0
        self.alerts = 0

    def receive(self, result: WindowResult) -> list[tuple[Verdict, bool]]:
        """Verdicts now in order, each with whether an alert was open before it was folded in."""
        if isinstance(result, Dropped):
            self.windows_dropped += 1
        elif isinstance(result, Failed):
            self.windows_failed += 1
        self._done[result.seq] = result
        released: list[tuple[Verdict, bool]] = []
        while self._next_seq in self._done:
            res = self._done.pop(self._next_seq)
            self._next_seq += 1
            if isinstance(res, NoSignal):
                self.windows_no_signal += 1
            elif isinstance(res, Verdict):
                self.windows_scored += 1
                self.last_score = res.probability
                self.last_window_end_s = res.end_s
                released.append((res, self.confirmer.active))
        return released

    def note(self, verdict: Verdict) -> None:
        """Remember a verdict's member probabilities (before the confirmer folds it in)."""
        members = verdict.details.get("members")
        if not isinstance(members, dict):
            return
        entry = (verdict.probability, {str(k): float(v) for k, v in members.items()})
        self._recent.append(entry)
        if self.confirmer.active and (self._peak is None or entry[0] > self._peak[0]):
            self._peak = entry

    def members_at(self, kind: str, peak_probability: float) -> dict[str, float] | None:
        """The member probabilities of the window that gave an event's ``peak_probability``."""
        if kind == "start":
            self._peak = None
        candidates = [*self._recent, *([self._peak] if self._peak is not None else [])]
        if not candidates:
            return None
        best = min(candidates, key=lambda c: abs(c[0] - peak_probability))
        if kind == "start":
            self._peak = best
        return best[1]


class AlertStage:
    """Alerts of every cell of one source (see the module docstring)."""

    def __init__(
        self,
        source_id: str,
        *,
        log: Sink | None = None,
        sinks: Sequence[Sink] = (),
        request_clip: RequestClip | None = None,
    ) -> None:
        self.source_id = source_id
        self.log = log
        self.sinks = list(sinks)
        self.request_clip = request_clip
        self.cells: list[CellAlerts] = []
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=_RECENT_EVENTS)
        self.clip_paths: dict[str, str] = {}

    def add_cell(self, camera_id: str, confirmation: ConfirmationSection, pre_alert: float) -> CellAlerts:
        cell = CellAlerts(camera_id, confirmation, pre_alert)
        self.cells.append(cell)
        return cell

    def receive(self, result: WindowResult) -> bool | None:
        """Fold one result in; returns whether its cell is hot (scoring above ``pre_alert`` or alerting:
        sample it at the alert stride) after the verdicts it released, None when it released none."""
        cell = self.cells[result.cell]
        hot = None
        for verdict, was_active in cell.receive(result):
            hot = verdict.probability >= cell.pre_alert or was_active
            cell.note(verdict)
            for event in cell.confirmer.push(verdict.start_s, verdict.end_s, verdict.probability):
                self.emit(cell, event)
        return hot

    def finish(self, at_s: float, reason: EndReason = "stream_end") -> None:
        """The stream ended or was stopped: end every open alert with ``reason``."""
        for cell in self.cells:
            for event in cell.confirmer.finish(at_s, reason):
                self.emit(cell, event)

    def emit(self, cell: CellAlerts, event: AlertEvent) -> None:
        if event.kind == "start" and self.request_clip is not None:
            path = self.request_clip(event.event_id, event.start_s)
            if path is not None:
                self.clip_paths[event.event_id] = path
        clip = self.clip_paths.get(event.event_id)
        if clip is not None:
            event = replace(event, clip_path=clip)
        data = event.to_dict()
        data["logged_unix_s"] = time.time()
        data["source_id"] = self.source_id
        if self.log is not None:
            members = cell.members_at(event.kind, event.peak_probability)
            # durable before anyone is told
            self.log.submit(data if members is None else {**data, "members": members})
        cell.events += 1
        if event.kind == "start":
            cell.alerts += 1
        self.recent_events.append(data)
        for sink in self.sinks:
            try:
                sink.submit(data)
            except Exception as exc:  # a broken sink never stops the stream
                logger.error("sink %s failed on %s: %s", type(sink).__name__, event.event_id, exc)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver or dead-letter what the sinks still hold, then close the log (blocking)."""
        for sink in self.sinks:
            try:
                sink.close(timeout_s)
            except Exception as exc:
                logger.error("sink %s did not close cleanly: %s", type(sink).__name__, exc)
        if self.log is not None:
            self.log.close(timeout_s)
