"""actors.sinks: webhook delivery against a real HTTP receiver (signatures, idempotency keys, retries,
dead letters, a receiver that is down or hangs, a full queue, close) and the console printer."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from actors.confirmation import AlertEvent
from actors.sinks import ConsoleSink, idempotency_key, sign, verify_signature
from actors.webhook import WebhookSink

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from events_factory import make_event  # noqa: E402

SECRET = "s3cret-for-tests"


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]


# (request number from 0, request) -> (status, extra headers)
Behaviour = Callable[[int, Request], tuple[int, dict[str, str]]]


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers per ``behaviour``."""

    behaviour: Behaviour = lambda n, r: (200, {})
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    answered: int = 0
    hold: threading.Event | None = None  # when set up, every handler waits for it before answering
    got_request: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    req = Request(headers=dict(self.headers.items()), body=body, at=time.monotonic())
                    n = len(receiver.requests)
                    receiver.requests.append(req)
                receiver.got_request.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                status, headers = receiver.behaviour(n, req)
                payload = b"nope" if status >= 300 else b"ok"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                with lock:
                    receiver.answered += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if hasattr(self, "server"):
            self.server.shutdown()
            self.server.server_close()

    def keys(self) -> list[str]:
        return [r.key for r in self.requests]


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_delivers_signed_json_with_idempotency_key(tmp_path: Path, receivers: list[Receiver]) -> None:
    rx = Receiver().start()
    receivers.append(rx)
    sink = WebhookSink(
        rx.url, secret=SECRET, dead_letter_path=tmp_path / "dl.jsonl", headers={"Authorization": "Bearer t"}
    )
    events = [make_event(1), make_event(1, kind="update", seq=1), make_event(1, kind="end", seq=2).to_dict()]
    for e in events:
        sink.submit(e)
    sink.close()

    assert len(rx.requests) == 3
    for event, req in zip(events, rx.requests, strict=True):
        data = event.to_dict() if isinstance(event, AlertEvent) else event
        assert json.loads(req.body) == data
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["Authorization"] == "Bearer t"
        assert req.key == f"{data['event_id']}:{data['kind']}:{data['seq']}" == idempotency_key(data)
        ts, sig = req.headers["X-Nexara-Timestamp"], req.headers["X-Nexara-Signature"]
        assert abs(int(ts) - time.time()) < 60
        assert verify_signature(SECRET, req.body, ts, sig)
        assert verify_signature(SECRET.encode(), req.body, ts, sig, max_age_s=60)
        assert not verify_signature("wrong-secret", req.body, ts, sig)
        assert not verify_signature(SECRET, req.body + b" ", ts, sig)
        assert not verify_signature(SECRET, req.body, str(int(ts) + 1), sig)
        assert not verify_signature(SECRET, req.body, ts, sig, max_age_s=60, now_unix_s=int(ts) + 3600)
    assert sink.stats() == {
        "submitted": 3,
        "delivered": 3,
        "retries": 0,
        "dead_lettered": 0,
        "dead_letter_errors": 0,
        "pending": 0,
    }
    assert dead_letters(tmp_path / "dl.jsonl") == []


def test_no_secret_means_no_signature_header(tmp_path: Path, receivers: list[Receiver]) -> None:
    rx = Receiver().start()
    receivers.append(rx)
    sink = WebhookSink(rx.url, dead_letter_path=tmp_path / "dl.jsonl")
    sink.submit(make_event(2))
    sink.close()
    assert len(rx.requests) == 1
    assert "X-Nexara-Signature" not in rx.requests[0].headers
    assert "X-Nexara-Timestamp" in rx.requests[0].headers


def test_retries_5xx_then_delivers_once(tmp_path: Path, receivers: list[Receiver]) -> None:
    rx = Receiver(behaviour=lambda n, r: (503, {}) if n < 2 else (200, {})).start()
    receivers.append(rx)
    sink = WebhookSink(rx.url, secret=SECRET, backoff_initial_s=0.01, dead_letter_path=tmp_path / "dl.jsonl")
    sink.submit(make_event(3))
    sink.close()
    assert rx.keys() == ["cam-1-3000-3:start:0"] * 3  # the same message, retried
    stats = sink.stats()
    assert stats["delivered"] == 1 and stats["retries"] == 2 and stats["dead_lettered"] == 0
    # each retry is signed afresh and still verifies
    assert all(
        verify_signature(SECRET, r.body, r.headers["X-Nexara-Timestamp"], r.headers["X-Nexara-Signature"])
        for r in rx.requests
    )


def test_retry_after_is_honoured_and_capped(tmp_path: Path, receivers: list[Receiver]) -> None:
    answers = [(429, {"Retry-After": "3600"}), (503, {"Retry-After": "0.6"}), (200, {})]
    rx = Receiver(behaviour=lambda n, r: answers[n]).start()
    receivers.append(rx)
    sink = WebhookSink(rx.url, backoff_initial_s=0.001, backoff_max_s=0.6, dead_letter_path=tmp_path / "dl.jsonl")
    sink.submit(make_event(4))
    sink.close()
    assert len(rx.requests) == 3 and sink.stats()["delivered"] == 1
    gap1 = rx.requests[1].at - rx.requests[0].at  # 3600 s capped to backoff_max_s
    gap2 = rx.requests[2].at - rx.requests[1].at  # 0.6 s as asked (jitter alone would be ~1 ms)
    assert 0.5 <= gap1 < 3.0
    assert 0.5 <= gap2 < 3.0


def test_receiver_down_then_up_gets_every_event_once_in_order(tmp_path: Path, receivers: list[Receiver]) -> None:
    port = free_port()
    rx = Receiver(port=port)
    receivers.append(rx)
    sink = WebhookSink(
        f"http://127.0.0.1:{port}/hook",
        max_attempts=100,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        dead_letter_path=tmp_path / "dl.jsonl",
    )
    events = [make_event(i) for i in range(20)]
    for e in events:
        sink.submit(e)
    time.sleep(1.0)  # the sink keeps failing to connect meanwhile
    assert rx.requests == [] and sink.stats()["retries"] >= 2
    rx.start()
    sink.close(timeout_s=15)

    stats = sink.stats()
    assert stats["delivered"] == 20 and stats["dead_lettered"] == 0 and stats["pending"] == 0
    seen: dict[str, int] = {}
    for key in rx.keys():  # a receiver dedupes by key
        seen[key] = seen.get(key, 0) + 1
    assert list(seen) == [idempotency_key(e) for e in events]  # none missing, order kept
    assert set(seen.values()) == {1}
    assert dead_letters(tmp_path / "dl.jsonl") == []


def test_permanent_4xx_goes_to_dead_letter_at_once(tmp_path: Path, receivers: list[Receiver]) -> None:
    bad = idempotency_key(make_event(5))
    rx = Receiver(behaviour=lambda n, r: (400, {}) if r.key == bad else (200, {})).start()
    receivers.append(rx)
    dl = tmp_path / "sub" / "dl.jsonl"
    sink = WebhookSink(rx.url, backoff_initial_s=0.01, dead_letter_path=dl)
    sink.submit(make_event(5))
    sink.submit(make_event(6))
    sink.close()

    assert rx.keys() == [bad, idempotency_key(make_event(6))]  # no retry of the 400
    records = dead_letters(dl)
    assert len(records) == 1
    rec = records[0]
    assert rec["event"] == make_event(5).to_dict()
    assert rec["url"] == rx.url and rec["attempts"] == 1
    assert rec["last_error"].startswith("HTTP 400")
    assert abs(rec["failed_unix_s"] - time.time()) < 60
    stats = sink.stats()
    assert stats["dead_lettered"] == 1 and stats["delivered"] == 1 and stats["retries"] == 0


def test_all_attempts_failing_dead_letters(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    dl = tmp_path / "dl.jsonl"
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", max_attempts=3, backoff_initial_s=0.01, dead_letter_path=dl)
    sink.submit(make_event(7))
    sink.close()
    records = dead_letters(dl)
    assert len(records) == 1
    assert records[0]["event"]["event_id"] == "cam-1-7000-7"
    assert records[0]["attempts"] == 3
    assert "ConnectError" in records[0]["last_error"]
    stats = sink.stats()
    assert stats == {
        "submitted": 1,
        "delivered": 0,
        "retries": 2,
        "dead_lettered": 1,
        "dead_letter_errors": 0,
        "pending": 0,
    }


def test_submit_never_waits_for_a_hanging_receiver(tmp_path: Path, receivers: list[Receiver]) -> None:
    rx = Receiver(hold=threading.Event()).start()
    receivers.append(rx)
    sink = WebhookSink(rx.url, timeout_s=20, dead_letter_path=tmp_path / "dl.jsonl")
    events = [make_event(i) for i in range(100)]
    for e in events:
        sink.submit(e)
    # Every submit returned while the receiver still holds the very first request.
    assert rx.answered == 0
    assert sink.stats()["delivered"] == 0 and sink.stats()["pending"] == 100
    assert rx.got_request.wait(5)
    assert len(rx.requests) == 1  # one worker: one request at a time
    assert rx.hold is not None
    rx.hold.set()
    sink.close(timeout_s=20)
    assert rx.keys() == [idempotency_key(e) for e in events]
    assert sink.stats()["delivered"] == 100


def test_full_queue_dead_letters_the_overflow(tmp_path: Path, receivers: list[Receiver]) -> None:
    rx = Receiver(hold=threading.Event()).start()
    receivers.append(rx)
    dl = tmp_path / "dl.jsonl"
    sink = WebhookSink(rx.url, queue_size=2, timeout_s=20, dead_letter_path=dl)
    events = [make_event(i) for i in range(10)]
    sink.submit(events[0])
    assert rx.got_request.wait(5)  # event 0 is in flight, the queue is empty
    for e in events[1:]:
        sink.submit(e)  # 1 and 2 fill the queue, 3..9 overflow
    records = dead_letters(dl)
    assert [r["event"]["event_id"] for r in records] == [e.event_id for e in events[3:]]
    assert all(r["attempts"] == 0 and "queue full" in r["last_error"] for r in records)
    assert rx.hold is not None
    rx.hold.set()
    sink.close()
    assert rx.keys() == [idempotency_key(e) for e in events[:3]]
    assert sink.stats() == {
        "submitted": 10,
        "delivered": 3,
        "retries": 0,
        "dead_lettered": 7,
        "dead_letter_errors": 0,
        "pending": 0,
    }


def test_close_drains_the_queue(tmp_path: Path, receivers: list[Receiver]) -> None:
    def slow(n: int, r: Request) -> tuple[int, dict[str, str]]:
        time.sleep(0.02)
        return 200, {}

    rx = Receiver(behaviour=slow).start()
    receivers.append(rx)
    sink = WebhookSink(rx.url, dead_letter_path=tmp_path / "dl.jsonl")
    events = [make_event(i) for i in range(25)]
    for e in events:
        sink.submit(e)
    assert sink.stats()["pending"] > 0
    sink.close(timeout_s=20)
    assert rx.keys() == [idempotency_key(e) for e in events]
    assert sink.stats()["delivered"] == 25 and sink.stats()["pending"] == 0
    sink.submit(make_event(99))  # after close: not sent, not lost
    assert [r["event"]["event_id"] for r in dead_letters(tmp_path / "dl.jsonl")] == ["cam-1-99000-99"]
    assert len(rx.requests) == 25


def test_close_timeout_dead_letters_what_is_left(tmp_path: Path, receivers: list[Receiver]) -> None:
    rx = Receiver(hold=threading.Event()).start()
    receivers.append(rx)
    dl = tmp_path / "dl.jsonl"
    sink = WebhookSink(rx.url, timeout_s=1.0, max_attempts=2, backoff_initial_s=0.01, dead_letter_path=dl)
    events = [make_event(i) for i in range(5)]
    for e in events:
        sink.submit(e)
    assert rx.got_request.wait(5)
    sink.close(timeout_s=0.3)  # the receiver never answers: nothing can be delivered
    records = dead_letters(dl)
    assert sorted(r["event"]["event_id"] for r in records) == sorted(e.event_id for e in events)
    assert all("closed" in r["last_error"] for r in records)
    stats = sink.stats()
    assert stats["dead_lettered"] == 5 and stats["delivered"] == 0 and stats["pending"] == 0


def test_bad_configuration_and_events_are_rejected(tmp_path: Path) -> None:
    dl = tmp_path / "dl.jsonl"
    for url in ("ftp://example.com/hook", "example.com/hook", "http:///nohost", ""):
        with pytest.raises(ValueError, match="http"):
            WebhookSink(url, dead_letter_path=dl)
    with pytest.raises(ValueError, match="max_attempts"):
        WebhookSink("http://127.0.0.1:9/x", max_attempts=0, dead_letter_path=dl)
    with pytest.raises(ValueError, match="backoff_initial_s"):
        WebhookSink("http://127.0.0.1:9/x", backoff_initial_s=60, backoff_max_s=1, dead_letter_path=dl)
    with pytest.raises(ValueError, match="secret"):
        WebhookSink("http://127.0.0.1:9/x", secret="", dead_letter_path=dl)

    sink = WebhookSink("http://127.0.0.1:9/x", max_attempts=1, dead_letter_path=dl)
    with pytest.raises(ValueError, match="seq"):
        sink.submit({"event_id": "e1", "kind": "start"})
    with pytest.raises(ValueError, match="event_id"):
        sink.submit({"kind": "start", "seq": 0})
    with pytest.raises(ValueError, match="JSON"):
        sink.submit({"event_id": "e1", "kind": "start", "seq": 0, "blob": object()})
    with pytest.raises(TypeError, match="mapping"):
        sink.submit(["not", "an", "event"])  # type: ignore[arg-type]
    sink.close(timeout_s=0)
    assert sink.stats()["submitted"] == 0

    assert idempotency_key(make_event(8, kind="end", seq=4)) == "cam-1-8000-8:end:4"
    assert sign(SECRET, b"{}", "1700000000") == sign(SECRET.encode(), b"{}", "1700000000")
    assert sign(SECRET, b"{}", "1700000000").startswith("sha256=")
    assert not verify_signature(SECRET, b"{}", "1700000000", "sha256=\u00e9")  # odd header: False, no crash


def test_console_sink_prints_one_line_per_event() -> None:
    out = io.StringIO()
    console = ConsoleSink(out)
    start = make_event(12)
    end = AlertEvent(**{**make_event(12, kind="end", seq=2).to_dict(), "clip_path": "/clips/cam-1-12000-12.mp4"})
    console.submit(start)
    console.submit({**end.to_dict(), "logged_unix_s": 1_767_225_600.0})
    console.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "START" in lines[0] and "cam-1" in lines[0] and "evt cam-1-12000-12" in lines[0]
    assert "p=0.91 HIGH" in lines[0] and "t=14.0s" in lines[0] and "dur=" not in lines[0]
    assert "END" in lines[1] and "dur=7.5s (quiet)" in lines[1] and "clip=/clips/cam-1-12000-12.mp4" in lines[1]
    assert lines[1].startswith("2026-01-01") or lines[1].startswith("2025-12-31")  # local time of that instant
    assert console.stats()["submitted"] == 2
    with pytest.raises(ValueError, match="camera_id"):
        console.submit({"event_id": "e", "kind": "start", "seq": 0})
