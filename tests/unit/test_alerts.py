"""actors.alerts on its own: typed results in any order -> window order -> confirmation -> evidence clip ->
durable log -> sinks (fake sinks, no threads, no Ray)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from actors.alerts import AlertStage
from actors.records import Dropped, Failed, NoSignal, Verdict
from nexara.config import ConfirmationSection

pytestmark = pytest.mark.unit

CONFIRM = ConfirmationSection(enter_threshold=0.6, exit_threshold=0.4, k=2, n=3, exit_windows=2)


class _Sink:
    def __init__(self, name: str, order: list[str], fail: bool = False) -> None:
        self.name = name
        self.order = order
        self.fail = fail
        self.events: list[dict[str, Any]] = []
        self.closed = False

    def submit(self, event: Mapping[str, Any]) -> None:
        self.order.append(self.name)
        if self.fail:
            raise OSError(f"{self.name} is down")
        self.events.append(dict(event))

    def close(self, timeout_s: float = 10.0) -> None:
        self.closed = True

    def stats(self) -> dict[str, int]:
        return {"events": len(self.events)}


def _verdict(seq: int, p: float, cell: int = 0) -> Verdict:
    return Verdict(cell, seq, float(seq), seq + 2.0, p, {"violence_probability": p})


def _stage(order: list[str], **kw: Any) -> tuple[AlertStage, _Sink, _Sink]:
    log, hook = _Sink("log", order), _Sink("hook", order, **kw)
    clips: list[tuple[str, float]] = []

    def request_clip(event_id: str, start_s: float) -> str:
        clips.append((event_id, start_s))
        return f"/clips/{event_id}.mp4"

    stage = AlertStage("src", log=log, sinks=[hook], request_clip=request_clip)
    stage.add_cell("cam", CONFIRM, pre_alert=0.25)
    return stage, log, hook


def test_out_of_order_results_are_folded_in_window_order() -> None:
    stage, log, _ = _stage([])
    assert stage.receive(_verdict(1, 0.9)) is None  # waits for window 0
    assert stage.receive(Dropped(0, 2, 2.0, 4.0)) is None  # counted at once, still waits
    assert stage.receive(_verdict(0, 0.1)) is True  # releases 0, 1, 2: window 1 is above pre_alert
    cell = stage.cells[0]
    assert (cell.windows_scored, cell.windows_dropped, cell.last_score) == (2, 1, 0.9)
    assert cell.confirmer.windows_seen == 2 and cell.confirmer.windows_out_of_order == 0
    assert stage.receive(NoSignal(0, 3, 3.0, 5.0, "frozen")) is None
    assert stage.receive(Failed(0, 4, 4.0, 6.0, "TimeoutError")) is None
    assert (cell.windows_no_signal, cell.windows_failed) == (1, 1)
    assert stage.receive(_verdict(5, 0.1)) is False
    assert log.events == []


def test_alert_goes_to_the_log_first_then_the_sinks_with_its_clip() -> None:
    order: list[str] = []
    stage, log, hook = _stage(order)
    for seq, p in enumerate([0.1, 0.9, 0.8]):
        stage.receive(_verdict(seq, p))
    assert [e["kind"] for e in log.events] == ["start"] and order == ["log", "hook"]
    start = log.events[0]
    assert start["camera_id"] == "cam" and start["source_id"] == "src" and start["start_s"] == 1.0
    assert start["clip_path"] == f"/clips/{start['event_id']}.mp4" and start["logged_unix_s"] > 0
    assert hook.events == log.events and stage.cells[0].alerts == 1
    assert stage.receive(_verdict(3, 0.1)) is True  # the alert is still open: stay at the alert stride
    stage.finish(at_s=20.0)
    assert [e["kind"] for e in log.events] == ["start", "end"]
    assert log.events[1]["end_reason"] == "stream_end" and log.events[1]["clip_path"] == start["clip_path"]
    assert list(stage.recent_events) == log.events and stage.cells[0].events == 2
    stage.close(1.0)
    assert log.closed and hook.closed


def test_a_broken_sink_never_stops_the_stream_but_the_log_must_succeed() -> None:
    order: list[str] = []
    stage, log, _ = _stage(order, fail=True)
    for seq, p in enumerate([0.9, 0.9]):
        stage.receive(_verdict(seq, p))
    assert [e["kind"] for e in log.events] == ["start"]
    log.fail = True
    with pytest.raises(OSError, match="log is down"):
        stage.finish(at_s=5.0)  # nobody is told about an event that is not durable


def test_logged_events_carry_the_peak_windows_member_probabilities() -> None:
    """The log (not the delivery sinks) gets ``members``: the member probabilities of the window whose
    probability is the event's peak, followed as the peak rises during the alert."""
    stage, log, hook = _stage([])
    scores = [0.2, 0.7, 0.8, 0.95, 0.3, 0.1, 0.1]
    for seq, p in enumerate(scores):
        members = {"flow_lr": round(p - 0.05, 2), "flow_trees": round(p + 0.01, 2)}
        stage.receive(Verdict(0, seq, float(seq), seq + 2.0, p, {"violence_probability": p, "members": members}))
    stage.finish(20.0)
    by_kind = {e["kind"]: e for e in log.events}
    assert by_kind["start"]["members"] == {"flow_lr": 0.75, "flow_trees": 0.81}  # peak 0.8 when confirmed
    assert by_kind["end"]["peak_probability"] == 0.95
    assert by_kind["end"]["members"] == {"flow_lr": 0.9, "flow_trees": 0.96}
    assert all("members" not in e for e in hook.events)
    # a verdict without members (an older ensemble) logs none
    plain, plain_log, _ = _stage([])
    for seq, p in enumerate(scores):
        plain.receive(_verdict(seq, p))
    assert plain_log.events and all("members" not in e for e in plain_log.events)
