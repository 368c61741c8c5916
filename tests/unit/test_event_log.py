"""actors.event_log: durable JSON Lines log, filters and pages, crash safety, torn lines, idempotency."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from actors.event_log import EventLog, EventRecord, is_review_line

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from events_factory import make_event as _make_event  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


make_event = partial(_make_event, camera_id="cam1", duration_s=5.0, peak=0.9, end_reason=None)


def test_append_then_read_with_filters_and_pages(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "runs" / "events.jsonl")
    for i in range(10):
        assert log.append(make_event(i, camera_id="cam1" if i % 2 == 0 else "cam2"))
    log.append(make_event(0, kind="end", seq=1).to_dict())  # dicts are accepted too
    everything = log.read(limit=1000)
    assert len(everything) == 11 and all(isinstance(r, EventRecord) for r in everything)
    assert [r.event_id for r in everything[:3]] == ["cam1-0-0", "cam2-1000-1", "cam1-2000-2"]
    assert everything[-1].kind == "end" and everything[-1].end_s == 5.0
    assert everything[0].logged_unix_s is not None

    cam2 = log.read(camera_id="cam2")
    assert [r.start_s for r in cam2] == [1.0, 3.0, 5.0, 7.0, 9.0]
    window = log.read(since_s=4.0, until_s=8.0)  # at_s = i + 2 in [4, 8) -> i in 2..5
    assert sorted({r.start_s for r in window}) == [2.0, 3.0, 4.0, 5.0]
    page1 = log.read(camera_id="cam1", limit=2)
    page2 = log.read(camera_id="cam1", offset=2, limit=2)
    page4 = log.read(camera_id="cam1", offset=6, limit=2)
    assert [r.start_s for r in page1] == [0.0, 2.0]
    assert [r.start_s for r in page2] == [4.0, 6.0]
    assert page4 == []
    with pytest.raises(ValueError, match="offset"):
        log.read(offset=-1)
    with pytest.raises(ValueError, match="limit"):
        log.read(limit=-1)
    # every line on disk is one complete JSON object
    lines = (tmp_path / "runs" / "events.jsonl").read_text().splitlines()
    assert len(lines) == 11 and all(json.loads(line)["camera_id"] for line in lines)
    log.close()


def test_rejects_invalid_events(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    bad = make_event(1).to_dict() | {"surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        log.append(bad)
    assert log.read() == []


def test_duplicate_key_is_stored_once_also_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    assert log.append(make_event(1)) is True
    assert log.append(make_event(1)) is False
    assert log.append(make_event(1, kind="update", seq=1)) is True
    log.close()
    reopened = EventLog(path)
    assert reopened.append(make_event(1)) is False
    assert reopened.append(make_event(1, kind="update", seq=1)) is False
    assert reopened.append(make_event(1, kind="update", seq=2)) is True
    assert len(reopened.read()) == 3 and len(reopened) == 3
    assert len(path.read_text().splitlines()) == 3


def test_thread_safe_appends(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")

    def worker(t: int) -> None:
        for i in range(25):
            log.append(make_event(t * 100 + i))
            log.append(make_event(t * 100 + i))  # racing duplicates

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    records = log.read(limit=1000)
    assert len(records) == 100 and len({r.event_id for r in records}) == 100
    assert log.bad_lines == 0


CHILD = """
import sys
from actors.confirmation import AlertEvent
from actors.event_log import EventLog
log = EventLog(sys.argv[1])
i = 0
while True:
    log.append(AlertEvent(event_id=f"cam-{i}", kind="start", seq=0, camera_id="cam", start_s=float(i),
                          end_s=None, at_s=float(i), peak_probability=0.9, mean_probability=0.9, tier="HIGH",
                          windows=3))
    sys.stdout.write(f"ack cam-{i}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(line.split()[1])
            if len(acked) >= 40:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) == 40
    stored = {r.event_id for r in EventLog(path).read(limit=10_000)}
    assert set(acked) <= stored


def test_torn_last_line_is_skipped_counted_and_healed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    for i in range(3):
        log.append(make_event(i))
    log.close()
    whole = make_event(99).to_dict()
    with path.open("ab") as f:
        f.write(json.dumps(whole).encode()[:40])  # half a line, no newline: a crash mid-write

    with caplog.at_level(logging.WARNING, logger="actors.event_log"):
        reopened = EventLog(path)
        records = reopened.read()
    assert [r.event_id for r in records] == ["cam1-0-0", "cam1-1000-1", "cam1-2000-2"]
    assert reopened.bad_lines == 1
    assert any("torn" in rec.getMessage() for rec in caplog.records)
    # the next append starts on a fresh line, so neither it nor the earlier events are lost
    assert reopened.append(make_event(99))
    records = reopened.read()
    assert [r.event_id for r in records][-1] == "cam1-99000-99" and len(records) == 4
    assert reopened.bad_lines == 1
    reopened.close()
    assert len(EventLog(path).read()) == 4


def test_appends_after_a_compaction_land_in_the_new_log(tmp_path: Path) -> None:
    """Retention replaces the log (new file + os.replace under the exclusive sidecar lock); an open
    EventLog reopens the replaced path at its next write, so no event or review goes to the old inode."""
    from actors.retention import compact_log

    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    for i in range(3):
        log.append(make_event(i))
    kept, dropped = compact_log(path, lambda record: record.get("event_id") != "cam1-0-0")
    assert (kept, dropped) == (2, 1)
    assert log.append(make_event(7))
    review = log.append_review("cam1-7000-7", "confirmed", "op")
    log.close()
    reopened = EventLog(path)
    assert [r.event_id for r in reopened.read()] == ["cam1-1000-1", "cam1-2000-2", "cam1-7000-7"]
    assert reopened.reviews() == [review]
    assert is_review_line(path.read_text().splitlines()[-1])
