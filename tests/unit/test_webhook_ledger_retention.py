"""Retention of the webhook's files (actors.retention with actors.webhook and actors.recovery): a real
WebhookSink posting to a real HTTP receiver on loopback writes its delivered ledger and dead-letter file in a
run folder while retention passes prune incidents and compact both files under it. No key or dead letter of
a kept incident is lost, none of a pruned incident is left, and a restart (``undelivered``) still sends
nothing the webhook already delivered or gave up on."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.event_log import EventLog
from actors.recovery import source_cameras, undelivered
from actors.retention import prune
from actors.stream_sinks import WEBHOOK_DEAD_LETTER, WEBHOOK_DELIVERED
from actors.webhook import WebhookSink
from nexara.config.upkeep import RetentionSection

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from events_factory import make_event  # noqa: E402
from webhook_receiver import serve_hooks  # noqa: E402

pytestmark = pytest.mark.unit

DAY_S = 86_400.0
NOW = time.time()  # the sink stamps nothing the retention reads; events carry their own logged_unix_s
SECTION = RetentionSection(max_age_days=30, confirmed_max_age_days=365)


class Receiver:
    """Answers 204, or 400 (permanent: the sink dead-letters it) for an event whose tier is ``LOW``."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, int]] = []
        lock = threading.Lock()
        answers = self.answers

        def respond(headers: dict[str, str], raw: bytes) -> int:
            status = 400 if json.loads(raw).get("tier") == "LOW" else 204
            with lock:
                answers.append((str(headers.get("webhook-id")), status))
            return status

        self.server = serve_hooks(respond)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.server.shutdown()
    rx.server.server_close()


def incident(cam: str, i: int, logged_unix_s: float, tier: str = "HIGH") -> list[dict[str, Any]]:
    """Start and end of incident ``i`` of ``cam``, as the live path logs and posts them."""
    out = []
    for kind, seq in (("start", 0), ("end", 1)):
        e = make_event(i, kind=kind, seq=seq, camera_id=cam).to_dict()
        out.append({**e, "tier": tier, "logged_unix_s": logged_unix_s + seq, "source_id": cam})
    return out


def key(e: dict[str, Any]) -> str:
    return f"{e['event_id']}:{e['kind']}:{e['seq']}"


def ledger_keys(run: Path) -> list[str]:
    return (run / WEBHOOK_DELIVERED).read_text().split()


def dead_keys(run: Path) -> list[str]:
    return [key(json.loads(line)["event"]) for line in (run / WEBHOOK_DEAD_LETTER).read_bytes().splitlines()]


def wait_for(what: str, done: Any) -> None:
    deadline = time.monotonic() + 30  # a bound on a hang, not a timing assertion
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def test_webhook_files_follow_their_incidents_while_the_webhook_appends(tmp_path: Path, receiver: Receiver) -> None:
    run = tmp_path / "run"
    log = EventLog(run / "events.jsonl")
    sink = WebhookSink(
        receiver.url,
        backoff_initial_s=0.01,
        dead_letter_path=run / WEBHOOK_DEAD_LETTER,
        delivered_path=run / WEBHOOK_DELIVERED,
    )
    live: list[dict[str, Any]] = []  # logged and posted by the "camera" thread, all within retention
    stop = threading.Event()

    def camera() -> None:  # the live path: log, then hand to the webhook (actors.alerts)
        i = 0
        while not stop.is_set():
            i += 1
            for e in incident("live", i, time.time(), "LOW" if i % 3 == 0 else "HIGH"):
                log.submit(e)
                sink.submit(e)
                live.append(e)
            while sink.stats()["pending"] > 20 and not stop.is_set():  # keep the queue short: none overflows
                time.sleep(0.001)

    writer = threading.Thread(target=camera)
    writer.start()
    ledger_passes = dead_letter_passes = 0
    try:
        for i in range(1, 21):  # one old incident per pass: delivered (even i) or refused (odd i), then pruned
            old = incident("old", i, NOW - 60 * DAY_S, "HIGH" if i % 2 == 0 else "LOW")
            for e in old:
                log.submit(e)
                sink.submit(e)
            on_file = ledger_keys if i % 2 == 0 else dead_keys
            wait_for(f"old incident {i} recorded", lambda: {key(e) for e in old} <= set(on_file(run)))  # noqa: B023
            seen = len(live)
            report = prune([run], SECTION, now_unix_s=NOW)
            assert report.pruned == [f"run/{old[0]['event_id']}"]
            ledger_passes += report.ledger_keys_dropped == 2
            dead_letter_passes += report.dead_letters_dropped == 2
            wait_for("the camera to go on", lambda: len(live) > seen + 4)  # noqa: B023
    finally:
        stop.set()
        writer.join()
    sink.close(30)
    report = prune([run], SECTION, now_unix_s=NOW)  # keys the webhook appended after the pass that pruned theirs

    delivered = {key(e) for e in live if e["tier"] == "HIGH"}
    refused = {key(e) for e in live if e["tier"] == "LOW"}
    assert ledger_passes == 10 and dead_letter_passes == 10 and len(live) > 100
    assert sink.stats()["delivered"] == len(delivered) + 20 and sink.stats()["dead_lettered"] == len(refused) + 20
    # every key of a kept incident survived every replace, once; none of a pruned incident is left
    assert sorted(ledger_keys(run)) == sorted(delivered)
    assert sorted(dead_keys(run)) == sorted(refused)
    assert not any(e.startswith("old-") for e in ledger_keys(run) + dead_keys(run))
    # a restart sends again nothing delivered or dead-lettered, only what was logged and never handed over
    ledger, dead_letter = run / WEBHOOK_DELIVERED, run / WEBHOOK_DEAD_LETTER
    reopened = EventLog(run / "events.jsonl")
    assert undelivered(reopened, source_cameras("live"), ledger, dead_letter, "live") == []
    late = incident("live", 10_000, time.time())[0]
    reopened.submit(late)
    todo = undelivered(reopened, source_cameras("live"), ledger, dead_letter, "live")
    assert [key(e) for e in todo] == [key(late)]


def test_dead_letters_go_only_with_their_incident(tmp_path: Path, receiver: Receiver) -> None:
    run = tmp_path / "run"
    log = EventLog(run / "events.jsonl")
    old, kept = incident("cam", 1, NOW - 60 * DAY_S, "LOW"), incident("cam", 2, NOW - DAY_S, "LOW")
    delivered = incident("cam", 3, NOW - DAY_S)
    with WebhookSink(
        receiver.url, dead_letter_path=run / WEBHOOK_DEAD_LETTER, delivered_path=run / WEBHOOK_DELIVERED
    ) as sink:
        for e in old + kept + delivered:
            log.submit(e)
            sink.submit(e)
    dead_letter, ledger = run / WEBHOOK_DEAD_LETTER, run / WEBHOOK_DELIVERED
    kept_lines = [line for line in dead_letter.read_bytes().splitlines(keepends=True) if b"cam-2000-2" in line]
    unknown = b'{"note": "an operator wrote this"}\n'
    with dead_letter.open("ab") as f:  # a line of a shape retention does not know, then a crash mid-write
        f.write(unknown + b'{"event": {"event_id": "cam-2000')
    with ledger.open("a") as f:  # a key of no logged event, and a torn one
        f.write("cam-9-9:start:0\ncam-3000-3:sta")

    report = prune([run], SECTION, now_unix_s=NOW)

    assert report.pruned == ["run/cam-1000-1"]
    assert report.dead_letters_dropped == 3 and report.ledger_keys_dropped == 2
    assert dead_letter.read_bytes() == b"".join(kept_lines) + unknown  # kept lines byte for byte, in order
    assert ledger_keys(run) == [key(e) for e in delivered]
    inode = (dead_letter.stat().st_ino, ledger.stat().st_ino)
    again = prune([run], SECTION, now_unix_s=NOW)
    assert again.dead_letters_dropped == again.ledger_keys_dropped == 0
    assert (dead_letter.stat().st_ino, ledger.stat().st_ino) == inode  # nothing to drop: files left alone
    assert undelivered(EventLog(run / "events.jsonl"), source_cameras("cam"), ledger, dead_letter, "cam") == []
