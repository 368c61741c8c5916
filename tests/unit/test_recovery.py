"""actors.recovery and what the soak (benchmarks/soak.py) broke before it was fixed: a restarted camera reused
event ids, left its dead actor's incidents open forever, and never delivered what the dead webhook sink held."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from actors.confirmation import Confirmer
from actors.event_log import EventLog
from actors.recovery import close_interrupted, source_cameras, undelivered
from actors.webhook import WebhookSink
from nexara.config import ConfirmationSection

pytestmark = pytest.mark.unit


def _incident(camera_id: str) -> list[dict[str, Any]]:
    c = Confirmer(camera_id, ConfirmationSection(k=1, n=1, enter_threshold=0.5, exit_threshold=0.4))  # type: ignore[call-arg]
    return [e.to_dict() for e in c.push(0.0, 2.0, 0.9)]


def test_a_restarted_camera_does_not_reuse_the_event_ids_of_its_previous_run() -> None:
    first, again = _incident("cam1"), _incident("cam1")  # same camera, same stream times, counter from 1
    assert first[0]["kind"] == again[0]["kind"] == "start"
    assert first[0]["event_id"] != again[0]["event_id"]
    assert Confirmer("cam1", run_tag="x").run_tag == "x"


def test_open_incidents_of_the_source_are_ended_interrupted_once(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    for cam in ("wall-r0c1", "other", "wall"):
        for e in _incident(cam):
            log.append(e)
    ended = _incident("wall-r1c1")
    log.append(ended[0])
    log.append({**ended[0], "kind": "end", "seq": 1, "end_s": 2.0, "end_reason": "quiet"})
    mine = source_cameras("wall")
    assert mine("wall") and mine("wall-r0c1") and not mine("other") and not mine("wall-x")
    closed = close_interrupted(log, mine)
    assert sorted(e["camera_id"] for e in closed) == ["wall", "wall-r0c1"]
    assert all(e["kind"] == "end" and e["end_reason"] == "interrupted" and e["seq"] == 1 for e in closed)
    assert close_interrupted(EventLog(tmp_path / "events.jsonl"), mine) == []  # a second restart: nothing left
    assert source_cameras("w", ["door", "hall"])("hall")


class _Hook(BaseHTTPRequestHandler):
    keys: list[str] = []  # noqa: RUF012

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).keys.append(str(self.headers.get("webhook-id")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_webhook_ledger_lets_a_restart_send_only_what_was_not_delivered(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.keys = []
    log = EventLog(tmp_path / "events.jsonl")
    delivered, dead = tmp_path / "delivered.log", tmp_path / "dead.jsonl"
    events = _incident("cam") + _incident("cam")
    try:
        sink = WebhookSink(
            f"http://127.0.0.1:{server.server_address[1]}/h", dead_letter_path=dead, delivered_path=delivered
        )
        log.append(events[0])
        sink.submit(events[0])
        sink.close(10)
        log.append(events[1])  # logged, then the process died before its webhook sent it
        assert _Hook.keys == [f"{events[0]['event_id']}:start:0"]
        assert delivered.read_text().split() == _Hook.keys
        todo = undelivered(log, source_cameras("cam"), delivered, dead, "cam")
        assert [(e["event_id"], e["source_id"]) for e in todo] == [(events[1]["event_id"], "cam")]
        assert "members" not in todo[0] and json.dumps(todo)
    finally:
        server.shutdown()
        server.server_close()
