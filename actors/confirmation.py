"""Temporal confirmation of per-window violence probabilities into alert events, one cell (camera) at a time.

A single hot window is not an alert: compression glitches, a hug or a fast pan can spike one window.
:class:`Confirmer` starts an alert when ``k`` of the last ``n`` windows reach ``enter_threshold``, keeps it
alive while scores stay at or above the lower ``exit_threshold`` (hysteresis, so a score hovering near the
enter threshold does not flap), ends it after ``exit_windows`` consecutive windows below ``exit_threshold``
or after ``max_event_s``, and then ignores new starts for ``cooldown_s``.

Times are stream seconds (the window timestamps the stream actor computes from PTS), never wall clock, so
replaying a recording gives the same events. The rule's settings are the schema's
:class:`nexara.config.ConfirmationSection` (a camera's resolved one). Pure logic: no Ray, no I/O.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nexara.config import ConfirmationSection
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

EventKind = Literal["start", "update", "end"]
#: ``interrupted``: the stream actor or process that owned the incident died; the incident was closed when its
#: camera started again (:func:`actors.recovery.close_interrupted`); ``shutdown``: the app or `nexara watch` was
#: stopped (SIGTERM/SIGINT); ``removed``: the camera was deleted over the API; ``stream_end``: the source ended
EndReason = Literal["quiet", "max_duration", "stream_end", "interrupted", "shutdown", "removed"]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One step of one incident. ``event_id`` is the same for the start, updates and end of an
    incident; ``seq`` numbers those steps (0 = start), so (event_id, kind, seq) identifies a message
    for idempotent delivery. ``at_s`` is the end of the window that produced the event (stream
    seconds); ``end_s`` is set only on ``end`` (the end of the last window at or above the exit
    threshold). ``windows`` counts the windows folded into the peak and mean so far."""

    event_id: str
    kind: EventKind
    seq: int
    camera_id: str
    start_s: float
    end_s: float | None
    at_s: float
    peak_probability: float
    mean_probability: float
    tier: str
    windows: int
    end_reason: EndReason | None = None
    clip_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Incident:
    event_id: str
    start_s: float
    peak: float
    total: float
    windows: int
    seq: int
    last_emit_s: float
    last_hot_end_s: float
    quiet_windows: int = 0

    def add(self, probability: float) -> None:
        self.peak = max(self.peak, probability)
        self.total += probability
        self.windows += 1

    @property
    def mean(self) -> float:
        return self.total / self.windows


class Confirmer:
    """Turns one cell's stream of window probabilities into :class:`AlertEvent` s. Not thread-safe:
    one stream actor owns one confirmer per cell."""

    def __init__(self, camera_id: str, cfg: ConfirmationSection | None = None, run_tag: str | None = None) -> None:
        if not camera_id:
            raise InvalidInputError("camera_id must be a non-empty string")
        self.camera_id = camera_id
        # in every event id: a restarted camera counts its incidents from 1 and its stream time from 0 again,
        # and must not reuse the ids (idempotency keys) of the incidents logged before it died
        self.run_tag = run_tag if run_tag is not None else secrets.token_hex(3)
        self.cfg = cfg if cfg is not None else ConfirmationSection()  # type: ignore[call-arg]
        # (window_start_s, window_end_s, probability) of the last n windows while idle.
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=self.cfg.n)
        self._incident: _Incident | None = None
        self._cooldown_until_s = -math.inf
        self._last_end_s = -math.inf
        self._counter = 0
        self.windows_seen = 0
        self.windows_out_of_order = 0
        self.starts_suppressed = 0

    @property
    def active(self) -> bool:
        return self._incident is not None

    @property
    def active_event_id(self) -> str | None:
        return self._incident.event_id if self._incident is not None else None

    def push(self, window_start_s: float, window_end_s: float, probability: float) -> list[AlertEvent]:
        """Fold one scored window in; returns the events it causes (usually none)."""
        if not (_is_number(window_start_s) and _is_number(window_end_s)) or window_end_s < window_start_s:
            raise InvalidInputError(f"bad window times: start {window_start_s!r}, end {window_end_s!r}")
        if not _is_number(probability) or not 0.0 <= probability <= 1.0:
            raise InvalidInputError(f"probability must be in [0, 1], got {probability!r}")
        if window_end_s < self._last_end_s:
            # A late window (retried request) must not rewind the state machine.
            self.windows_out_of_order += 1
            logger.warning(
                "camera %s: window ending at %.3fs arrived after %.3fs; ignored",
                self.camera_id,
                window_end_s,
                self._last_end_s,
            )
            return []
        self._last_end_s = window_end_s
        self.windows_seen += 1
        if self._incident is None:
            return self._push_idle(window_start_s, window_end_s, probability)
        return self._push_active(self._incident, window_end_s, probability)

    def finish(self, at_s: float | None = None, reason: EndReason = "stream_end") -> list[AlertEvent]:
        """End an open incident when the stream ends or is stopped (``reason``, default ``stream_end``)."""
        incident = self._incident
        if incident is None:
            return []
        at = self._last_end_s if at_s is None else at_s
        return [self._end(incident, at, reason)]

    def _push_idle(self, window_start_s: float, window_end_s: float, probability: float) -> list[AlertEvent]:
        cfg = self.cfg
        self._recent.append((window_start_s, window_end_s, probability))
        hot = [w for w in self._recent if w[2] >= cfg.enter_threshold]
        if len(hot) < cfg.k:
            return []
        if window_end_s < self._cooldown_until_s:
            self.starts_suppressed += 1
            logger.debug("camera %s: start suppressed by cooldown until %.3fs", self.camera_id, self._cooldown_until_s)
            return []
        # The incident starts at its first hot window still in view, and takes in every window since.
        first = next(i for i, w in enumerate(self._recent) if w[2] >= cfg.enter_threshold)
        included = list(self._recent)[first:]
        start_s = included[0][0]
        self._counter += 1
        incident = _Incident(
            event_id=f"{self.camera_id}-{round(start_s * 1000)}-{self._counter}-{self.run_tag}",
            start_s=start_s,
            peak=0.0,
            total=0.0,
            windows=0,
            seq=0,
            last_emit_s=window_end_s,
            last_hot_end_s=window_end_s,
        )
        for _, _, p in included:
            incident.add(p)
        self._incident = incident
        self._recent.clear()
        logger.info("camera %s: alert %s started at %.3fs", self.camera_id, incident.event_id, start_s)
        events = [self._event(incident, "start", window_end_s)]
        if window_end_s - start_s >= cfg.max_event_s:
            events.append(self._end(incident, window_end_s, "max_duration"))
        return events

    def _push_active(self, incident: _Incident, window_end_s: float, probability: float) -> list[AlertEvent]:
        cfg = self.cfg
        incident.add(probability)
        if probability >= cfg.exit_threshold:
            incident.quiet_windows = 0
            incident.last_hot_end_s = window_end_s
        else:
            incident.quiet_windows += 1
        if incident.quiet_windows >= cfg.exit_windows:
            return [self._end(incident, window_end_s, "quiet")]
        if window_end_s - incident.start_s >= cfg.max_event_s:
            return [self._end(incident, window_end_s, "max_duration")]
        if window_end_s - incident.last_emit_s >= cfg.update_every_s:
            incident.last_emit_s = window_end_s
            return [self._event(incident, "update", window_end_s)]
        return []

    def _end(self, incident: _Incident, at_s: float, reason: EndReason) -> AlertEvent:
        end_s = at_s if reason == "max_duration" else incident.last_hot_end_s
        event = self._event(incident, "end", at_s, end_s=end_s, reason=reason)
        self._incident = None
        self._recent.clear()
        self._cooldown_until_s = at_s + self.cfg.cooldown_s
        logger.info("camera %s: alert %s ended at %.3fs (%s)", self.camera_id, incident.event_id, end_s, reason)
        return event

    def _event(
        self,
        incident: _Incident,
        kind: EventKind,
        at_s: float,
        *,
        end_s: float | None = None,
        reason: EndReason | None = None,
    ) -> AlertEvent:
        event = AlertEvent(
            event_id=incident.event_id,
            kind=kind,
            seq=incident.seq,
            camera_id=self.camera_id,
            start_s=incident.start_s,
            end_s=end_s,
            at_s=at_s,
            peak_probability=incident.peak,
            mean_probability=incident.mean,
            tier=self.cfg.tier_for(incident.peak),
            windows=incident.windows,
            end_reason=reason,
        )
        incident.seq += 1
        return event
