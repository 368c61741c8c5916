"""actors.retention and actors.log_lock on real run folders (event logs written by EventLog, reviews by
append_review, real clip files): age limits (confirmed incidents kept longer), the size budget (oldest
unconfirmed ended incidents first), compaction keeping every record still within retention byte for
byte, reviews following their events, orphan and torn-line cleanup, files outside the run never touched,
appenders that follow the lock protocol losing nothing while the log is compacted under them, the
background task, and the config rules."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from actors.event_log import EventLog
from actors.log_lock import APPEND_FLAGS, log_lock, reopen_if_replaced
from actors.retention import RetentionTask, compact_log, discover_runs, prune
from nexara.config.upkeep import RetentionSection

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from events_factory import make_event  # noqa: E402

pytestmark = pytest.mark.unit

DAY_S = 86_400.0
NOW = 1_800_000_000.0


def section(**kw: Any) -> RetentionSection:
    return RetentionSection(**{"max_age_days": 30, "confirmed_max_age_days": 365, **kw})


def add_incident(
    log: EventLog, run: Path, i: int, age_days: float, clip_src: Path, *, ended: bool = True, cam: str = "cam-1"
) -> str:
    """Incident ``i`` logged ``age_days`` before NOW, with a cell clip and its wall remux on disk."""
    event_id = f"{cam}-{i * 1000}-{i}"
    clip = run / "clips" / f"{event_id}.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip_src, clip)
    shutil.copyfile(clip_src, clip.with_name(f"{event_id}-wall.mp4"))
    t = NOW - age_days * DAY_S
    log.append({**make_event(i, camera_id=cam).to_dict(), "clip_path": str(clip), "logged_unix_s": t})
    if ended:
        end = make_event(i, kind="end", seq=1, camera_id=cam).to_dict()
        log.append({**end, "clip_path": str(clip), "logged_unix_s": t + 10})
    return event_id


def lines_of(path: Path, event_id: str) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines(keepends=True) if event_id.encode() in line]


@pytest.fixture
def clip_src(shared_clips: Path) -> Path:
    return shared_clips / "noFight" / "nofi001.mp4"


def test_age_limits_compact_the_log_and_delete_clips(tmp_path: Path, clip_src: Path) -> None:
    run = tmp_path / "runs" / "20261101-000000"
    path = run / "events.jsonl"
    log = EventLog(path)
    old = add_incident(log, run, 1, 40, clip_src)  # past 30 days, unreviewed: pruned
    old_dismissed = add_incident(log, run, 2, 40, clip_src)
    old_confirmed = add_incident(log, run, 3, 40, clip_src)  # kept: confirmed incidents keep 365 days
    ancient_confirmed = add_incident(log, run, 4, 400, clip_src)  # past 365 days: pruned
    recent = add_incident(log, run, 5, 1, clip_src, ended=False)  # open and recent: kept
    log.append_review(old_dismissed, "dismissed", "op")
    log.append_review(old_confirmed, "dismissed", "op")
    log.append_review(old_confirmed, "confirmed", "op", "on second look")  # the latest review counts
    log.append_review(ancient_confirmed, "confirmed", "op")
    log.append_review(recent, "confirmed", "op")
    log.close()
    with path.open("ab") as f:  # a record kind this version does not know, and a torn last line
        f.write(b'{"record": "note", "event_id": "x", "text": "kept as it is"}\n{"event_id": "torn", "ki')
    kept_before = {eid: lines_of(path, eid) for eid in (old_confirmed, recent)}
    orphan_old = run / "clips" / "gone-1-1.mp4"  # a clip no event points to (its events compacted away)
    orphan_new = run / "clips" / "gone-2-2.mp4"
    for orphan in (orphan_old, orphan_new):
        shutil.copyfile(clip_src, orphan)
    os.utime(orphan_old, (NOW - 31 * DAY_S, NOW - 31 * DAY_S))
    os.utime(orphan_new, (NOW - 1 * DAY_S, NOW - 1 * DAY_S))
    outside = tmp_path / "not-a-clip.mp4"  # an event pointing outside its run never deletes that file
    shutil.copyfile(clip_src, outside)
    with EventLog(path) as log2:
        log2.append({**make_event(9, camera_id="cam-9").to_dict(), "clip_path": str(outside), "logged_unix_s": 0.0})

    report = prune(discover_runs(tmp_path / "runs"), section(), now_unix_s=NOW)

    assert sorted(report.pruned) == sorted(
        f"{run.name}/{e}" for e in (old, old_dismissed, ancient_confirmed, "cam-9-9000-9")
    )
    assert report.incidents_pruned == 4 and report.clips_deleted == 3 * 2 + 1  # 3 cell+wall pairs, 1 old orphan
    for eid in (old, old_dismissed, ancient_confirmed):
        assert not lines_of(path, eid) and not (run / "clips" / f"{eid}.mp4").exists()
        assert not (run / "clips" / f"{eid}-wall.mp4").exists()
    for eid, lines in kept_before.items():  # every kept record and review, byte for byte, in order
        assert lines_of(path, eid) == lines and (run / "clips" / f"{eid}.mp4").is_file()
    assert outside.is_file() and not orphan_old.exists() and orphan_new.is_file()
    assert b'"record": "note"' in path.read_bytes() and b'"torn"' not in path.read_bytes()
    with EventLog(path) as reread:  # still a valid log: events, reviews, no bad line
        assert {r.event_id for r in reread.read(limit=100)} == {old_confirmed, recent}
        assert [(r.event_id, r.verdict) for r in reread.reviews()] == [
            (old_confirmed, "dismissed"),
            (old_confirmed, "confirmed"),
            (recent, "confirmed"),
        ]
        assert reread.bad_lines == 1  # the note: a record kind this EventLog does not read, kept
    assert not list(run.glob(".*compact"))
    again = prune(discover_runs(tmp_path / "runs"), section(), now_unix_s=NOW)  # idempotent
    assert again.incidents_pruned == 0 and again.lines_dropped == 0 and again.clips_deleted == 0


def test_size_budget_prunes_oldest_unconfirmed_ended_incidents_first(tmp_path: Path, clip_src: Path) -> None:
    clip_mb = clip_src.stat().st_size / 2**20
    runs = [tmp_path / "a", tmp_path / "b"]
    logs = [EventLog(r / "events.jsonl") for r in runs]
    ids = {
        "oldest_confirmed": add_incident(logs[0], runs[0], 1, 5, clip_src),
        "old": add_incident(logs[0], runs[0], 2, 4, clip_src),
        "open": add_incident(logs[1], runs[1], 3, 3.5, clip_src, ended=False),
        "mid": add_incident(logs[1], runs[1], 4, 3, clip_src),
        "new": add_incident(logs[0], runs[0], 5, 1, clip_src),
    }
    logs[0].append_review(ids["oldest_confirmed"], "confirmed", "op")
    for log in logs:
        log.close()
    # 5 incidents x 2 files; a budget for 5 files leaves 2 incidents plus what the logs take
    report = prune(runs, section(max_total_mb=5.2 * clip_mb), now_unix_s=NOW)
    assert sorted(p.split("/")[1] for p in report.pruned) == sorted([ids["old"], ids["mid"], ids["new"]])
    assert report.bytes_after <= 5.2 * clip_mb * 2**20
    assert (runs[0] / "clips" / f"{ids['oldest_confirmed']}.mp4").is_file()  # confirmed: last to go
    assert (runs[1] / "clips" / f"{ids['open']}.mp4").is_file()  # open: never pruned for size


def test_appenders_following_the_lock_protocol_lose_nothing_during_compaction(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    old = [json.dumps({"event_id": f"old-{i}", "kind": "start"}).encode() + b"\n" for i in range(200)]
    path.write_bytes(b"".join(old))
    written: list[str] = []
    stop = threading.Event()

    def appender(name: str) -> None:
        fd = os.open(path, APPEND_FLAGS, 0o644)
        n = 0
        while not stop.is_set():
            line = json.dumps({"event_id": f"{name}-{n}", "kind": "start"}).encode() + b"\n"
            with log_lock(path, exclusive=False):
                fd = reopen_if_replaced(fd, path)
                os.write(fd, line)
            written.append(f"{name}-{n}")
            n += 1
        os.close(fd)

    threads = [threading.Thread(target=appender, args=(f"w{k}",)) for k in range(2)]
    for t in threads:
        t.start()
    compactions = 0
    deadline = time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline:
            _, dropped = compact_log(path, lambda d: not str(d.get("event_id")).startswith("old-"))
            compactions += dropped > 0
            with log_lock(path, exclusive=False), path.open("ab") as f:  # something to drop next time
                f.write(old[0])
            time.sleep(0.005)
    finally:
        stop.set()
        for t in threads:
            t.join()
    on_disk = [json.loads(line)["event_id"] for line in path.read_bytes().splitlines()]
    on_disk = [e for e in on_disk if not e.startswith("old-")]  # the one appended after the last compaction
    assert compactions >= 5 and len(written) > 50
    assert sorted(on_disk) == sorted(written)  # every append survived every replace, none twice


def test_background_task_runs_a_pass_at_start_and_stops(tmp_path: Path, clip_src: Path) -> None:
    run = tmp_path / "runs" / "r1"
    log = EventLog(run / "events.jsonl")
    eid = add_incident(log, run, 1, (NOW - time.time()) / DAY_S + 40, clip_src)  # 40 days before now
    log.close()
    task = RetentionTask(tmp_path / "runs", section(interval_s=3600))
    task.start()
    deadline = time.monotonic() + 10
    while task.passes == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    task.stop()
    assert task.passes == 1 and task.last_error is None and task.last_report is not None
    assert task.last_report.pruned == [f"r1/{eid}"] and not (run / "clips" / f"{eid}.mp4").exists()
    disabled = RetentionTask(tmp_path / "runs", section(enabled=False))
    disabled.start()
    assert disabled._thread is None


def test_section_rules_and_runs_discovery(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="confirmed_max_age_days"):
        RetentionSection(max_age_days=30, confirmed_max_age_days=7)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="max_total_mb"):
        RetentionSection(max_total_mb=0)  # type: ignore[call-arg]
    assert discover_runs(tmp_path / "missing") == []
    (tmp_path / "r" / "events.jsonl").parent.mkdir()
    (tmp_path / "r" / "events.jsonl").write_text("")
    (tmp_path / "drift-reference").mkdir()
    assert discover_runs(tmp_path) == [tmp_path / "r"]


def test_the_camera_manager_prunes_the_live_runs_folder_only_around_its_own_runs(tmp_path: Path) -> None:
    """The camera manager's retention root (and where drift references are kept): a run inside
    ``sinks.run_dir`` (absolute, or relative as the config gives it, matched against the run's parents since
    actors run in Ray's folder) gives that folder of runs; a run folder given anywhere else only itself,
    so its neighbours are never pruned."""
    from actors.stream import runs_folder

    runs = tmp_path / "runs" / "live"
    run = runs / "20261125T170000Z"
    assert runs_folder(run, str(runs)) == runs
    assert runs_folder(run, "runs/live") == runs
    elsewhere = tmp_path / "mine" / "run"
    assert runs_folder(elsewhere, str(runs)) == elsewhere
    assert runs_folder(elsewhere, "runs/live") == elsewhere
