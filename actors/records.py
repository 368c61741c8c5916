"""The small frozen records that join the live stages of one source, and its status records.

Windowing (:mod:`actors.windowing`) cuts :class:`WindowInfo` (which span of which cell, and its frames)
or, for a cell without a picture, a :class:`NoSignal`; scoring (:mod:`actors.scoring`) turns a window
into a :class:`Verdict`, :class:`Dropped` or :class:`Failed`; alerts (:mod:`actors.alerts`) takes every
result in window order. :class:`SourceStatus` (with one :class:`CellStatus` per cell) is what the
metrics, ``nexara watch`` and the HTTP API read; :meth:`SourceStatus.to_dict` is the one place that
gives it the JSON shape of the HTTP responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from actors.grid import CellSignal as Signal  # one declaration of a cell's picture state
from actors.quality import CameraQuality


@dataclass(frozen=True, slots=True)
class WindowSpan:
    """Window ``seq`` of cell ``cell`` (its index in the source), over stream seconds ``start_s..end_s``."""

    cell: int
    seq: int
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class WindowInfo(WindowSpan):
    """A window to score: the ids of its model-size frames (shared with overlapping windows, so each
    frame is embedded once), those frames, the motion statistics and when it was cut (monotonic s).
    A clip model's window lists its ``num_frames`` frames in order (an id twice where the span had
    fewer frames), with their stream times in ``frame_times_s``."""

    frame_ids: tuple[int, ...]
    frames: Mapping[int, np.ndarray]
    motion: np.ndarray | None
    created_s: float
    frame_times_s: tuple[float, ...] = ()

    def clip(self) -> np.ndarray:
        """The window's frames stacked in order, ``(T, H, W, 3)`` uint8 (a clip backbone's input)."""
        return np.stack([self.frames[i] for i in self.frame_ids])


@dataclass(frozen=True, slots=True)
class Verdict(WindowSpan):
    """A scored window: the calibrated violence probability and the ensemble's whole answer (or, for
    a window the cascade's gate kept from the clip model, the gate member's answer: ``details["gated"]``)."""

    probability: float
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Dropped(WindowSpan):
    """A window dropped unscored: the queue was full (a live source drops the oldest)."""


@dataclass(frozen=True, slots=True)
class Failed(WindowSpan):
    """A window whose scoring failed after every attempt."""

    error: str


@dataclass(frozen=True, slots=True)
class NoSignal(WindowSpan):
    """A window not scored: its cell was black or frozen."""

    signal: Signal


WindowResult = Verdict | Dropped | Failed | NoSignal


def span_of(window: WindowSpan) -> tuple[int, int, float, float]:
    """The span fields of ``window``, to build a result for it: ``Dropped(*span_of(w))``."""
    return (window.cell, window.seq, window.start_s, window.end_s)


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CellStatus:
    """One cell (a camera) of a source. The field names are the metric fields of
    :data:`actors.live_metrics.METRICS` and the keys of the HTTP status."""

    camera_id: str
    box: tuple[int, int, int, int]
    signal: Signal
    alert_active: bool
    active_event_id: str | None
    fps_analysed: float | None
    frames_analysed: int
    windows_made: int
    windows_scored: int
    windows_dropped: int
    windows_failed: int
    windows_no_signal: int
    windows_gated: int
    cuts: int
    stride_s: float
    last_score: float | None
    last_window_end_s: float | None
    events: int
    alerts: int
    quality: CameraQuality | None = None  # review precision and score drift (actors.quality)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One source (a camera, a file or a monitor wall). ``config`` is the camera's config when the
    camera manager answers for one camera (``GET /v1/cameras/{id}``), else None (and left out)."""

    source_id: str
    url: str
    state: str
    error: str | None
    fps_in: float | None
    frames_in: int
    stream_time_s: float
    connects: int
    reconnects: int
    corrupt_packets: int
    queued: int
    in_flight: int
    started_unix_s: float | None
    cells: tuple[CellStatus, ...]
    config: Mapping[str, Any] | None = None

    @property
    def windows_dropped(self) -> int:
        return sum(c.windows_dropped for c in self.cells)

    @property
    def windows_scored(self) -> int:
        return sum(c.windows_scored for c in self.cells)

    def cell(self, camera_id: str) -> CellStatus | None:
        return next((c for c in self.cells if c.camera_id == camera_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the HTTP API (``/v1/cameras``...)."""
        skip = ("started_unix_s", "cells", "config")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["windows_dropped"] = self.windows_dropped
        out["windows_scored"] = self.windows_scored
        out["started_unix_s"] = self.started_unix_s
        out["cells"] = [{**asdict(c), "box": list(c.box)} for c in self.cells]
        if self.config is not None:
            out["config"] = dict(self.config)
        return out
