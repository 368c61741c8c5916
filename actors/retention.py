"""Retention of live runs: incidents (all their events and reviews, and their evidence clips) older than
``retention.max_age_days`` are pruned, those an operator confirmed only after
``retention.confirmed_max_age_days``; past ``retention.max_total_mb`` (event logs and clip folders of
every run together) the oldest *ended* incidents go first, unconfirmed before confirmed. An incident's age
is that of its last logged event (``logged_unix_s``).

Each event log is compacted by :func:`compact_log`: the kept lines (events and reviews of kept incidents,
and any line of a kind this module does not know) are written to a new file, fsynced and
``os.replace``-d over the log under the exclusive lock of :mod:`actors.log_lock`; appenders take the same
lock shared and reopen a replaced log, so no record is lost. A torn line (a crash mid-write) is dropped.
Clip files no kept event points to are deleted once older than ``max_age_days`` (failed or orphaned).

The webhook's files in the run folder follow the compacted log, by the same lock protocol (the webhook
appends to both under the shared lock): its delivered ledger keeps only the keys of events the log still
holds (:func:`actors.recovery.event_key`, what :func:`actors.recovery.undelivered` compares), its dead-letter
file only the lines of incidents the log still holds (operator-facing records of failures: they go with their
incident, never before it). Both are read under their exclusive lock *before* the log is read: the webhook is
handed an event only once it is logged, so a key appended meanwhile belongs to an event that read sees.

:func:`prune` is one pass; :class:`RetentionTask` runs it every ``retention.interval_s`` on a daemon
thread over every run folder under a root. Pure logic plus file I/O: no Ray.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.log_lock import log_lock
from actors.recovery import dead_letter_event, event_key, logged_records
from actors.stream_sinks import WEBHOOK_DEAD_LETTER, WEBHOOK_DELIVERED
from nexara.config.upkeep import RetentionSection

logger = logging.getLogger(__name__)

__all__ = ["Incident", "RetentionReport", "RetentionTask", "compact_log", "discover_runs", "prune"]

_DAY_S = 86_400.0
_CLIP_SUFFIXES = (".mp4", ".mkv")


@dataclass(slots=True)
class Incident:
    run_dir: Path
    event_id: str
    last_unix_s: float
    ended: bool = False
    confirmed: bool = False  # its latest review confirmed it
    clips: set[Path] = field(default_factory=set)
    log_bytes: int = 0

    def clip_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.clips if p.is_file())


@dataclass(slots=True)
class RetentionReport:
    incidents_pruned: int = 0
    lines_dropped: int = 0
    clips_deleted: int = 0
    ledger_keys_dropped: int = 0  # webhook delivered-ledger lines
    dead_letters_dropped: int = 0
    bytes_freed: int = 0
    bytes_after: int = 0
    pruned: list[str] = field(default_factory=list)  # "<run>/<event id>"


def discover_runs(root: str | os.PathLike[str], event_log: str = "events.jsonl") -> list[Path]:
    """``root`` itself and its sub-folders that hold an event log."""
    base = Path(root)
    if not base.is_dir():
        return []
    return [d for d in (base, *sorted(base.iterdir())) if d.is_dir() and (d / event_log).is_file()]


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _incidents(run: Path, log: Path) -> dict[str, Incident]:
    """The incidents of one log, with the files of their clips (the event's clip and a wall remux beside it)."""
    fallback = log.stat().st_mtime
    found: dict[str, Incident] = {}
    verdicts: dict[str, str] = {}
    with log.open("rb") as f:
        for raw in f:
            data = _parse(raw)
            if data is None or not isinstance(data.get("event_id"), str):
                continue
            eid = data["event_id"]
            if data.get("record") == "review":
                verdicts[eid] = str(data.get("verdict"))  # log order: the latest wins
                continue
            if "record" in data:
                continue
            t = data.get("logged_unix_s")
            t = float(t) if isinstance(t, (int, float)) else fallback
            inc = found.setdefault(eid, Incident(run, eid, t))
            inc.last_unix_s = max(inc.last_unix_s, t)
            inc.ended = inc.ended or data.get("kind") == "end"
            inc.log_bytes += len(raw)
            clip = data.get("clip_path")
            if isinstance(clip, str) and clip:
                path = (run / clip).resolve()  # an absolute clip_path stays as it is
                if path.is_relative_to(run.resolve()):  # a log line never deletes files outside its run
                    inc.clips.update({path, path.with_name(f"{path.stem}-wall{path.suffix}")})
    for eid, verdict in verdicts.items():
        if eid in found:
            found[eid].confirmed = verdict == "confirmed"
    return found


def compact_log(log: str | os.PathLike[str], keep: Callable[[dict[str, Any]], bool]) -> tuple[int, int]:
    """Rewrite ``log`` with the lines ``keep`` accepts (torn lines dropped), atomically, under the
    exclusive log lock. Returns (lines kept, lines dropped); the file is untouched when nothing drops."""

    def keep_line(raw: bytes) -> bool:
        data = _parse(raw)
        return data is not None and keep(data)

    return _compact(log, lambda: keep_line)


def _compact(log: str | os.PathLike[str], rule: Callable[[], Callable[[bytes], bool]]) -> tuple[int, int]:
    """:func:`compact_log` of raw lines; ``rule`` is called once the exclusive lock is held and returns the
    line filter (so what it reads is read after the last append it must keep)."""
    path = Path(log)
    with log_lock(path, exclusive=True):
        keep = rule()
        kept: list[bytes] = []
        dropped = 0
        with path.open("rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                if not keep(raw):
                    dropped += 1
                    continue
                kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
        if dropped == 0:
            return len(kept), 0
        tmp = path.with_name(f".{path.name}.{os.getpid()}.compact")
        try:
            with open(tmp, "wb") as out:
                out.writelines(kept)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    return len(kept), dropped


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(paths: Iterable[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def prune(
    run_dirs: Sequence[str | os.PathLike[str]],
    section: RetentionSection,
    *,
    event_log: str = "events.jsonl",
    now_unix_s: float | None = None,
) -> RetentionReport:
    """One retention pass over ``run_dirs`` (see the module docstring)."""
    now = time.time() if now_unix_s is None else now_unix_s
    runs = [Path(r) for r in run_dirs if (Path(r) / event_log).is_file()]
    storage = [p for r in runs for p in (r / event_log, r / "clips")]
    incidents = [inc for r in runs for inc in _incidents(r, r / event_log).values()]
    report = RetentionReport()

    doomed: list[Incident] = []
    for inc in incidents:
        limit_days = section.confirmed_max_age_days if inc.confirmed else section.max_age_days
        if now - inc.last_unix_s > limit_days * _DAY_S:
            doomed.append(inc)
    if section.max_total_mb is not None:
        budget = int(section.max_total_mb * 1024 * 1024)
        excess = _size(storage) - budget - sum(i.clip_bytes() + i.log_bytes for i in doomed)
        ids = {id(i) for i in doomed}
        for inc in sorted(incidents, key=lambda i: (i.confirmed, i.last_unix_s)):
            if excess <= 0:
                break
            if id(inc) not in ids and inc.ended:
                doomed.append(inc)
                excess -= inc.clip_bytes() + inc.log_bytes

    gone: dict[Path, set[str]] = {}
    for inc in doomed:
        gone.setdefault(inc.run_dir, set()).add(inc.event_id)
        report.pruned.append(f"{inc.run_dir.name}/{inc.event_id}")
    report.incidents_pruned = len(doomed)
    for run in runs:  # the records go first: an event never points at a clip already deleted
        log = run / event_log
        size_before = log.stat().st_size
        _, dropped = compact_log(log, _keeps_all_but(gone.get(run, set())))
        report.lines_dropped += dropped
        report.bytes_freed += max(0, size_before - log.stat().st_size)
        _compact_webhook_files(run, log, report)
    for clip in {c for inc in doomed for c in inc.clips}:
        if clip.is_file():
            report.bytes_freed += clip.stat().st_size
            clip.unlink()
            report.clips_deleted += 1
    for run in runs:
        report.clips_deleted += _orphan_clips(run, run / event_log, now - section.max_age_days * _DAY_S, report)
    report.bytes_after = _size(storage)
    if report.incidents_pruned or report.clips_deleted or report.ledger_keys_dropped or report.dead_letters_dropped:
        logger.info(
            "retention: %d incident(s) pruned, %d log line(s), %d delivered key(s), %d dead letter(s) and %d clip(s) "
            "removed, %.1f MB freed, %.1f MB kept",
            report.incidents_pruned,
            report.lines_dropped,
            report.ledger_keys_dropped,
            report.dead_letters_dropped,
            report.clips_deleted,
            report.bytes_freed / 2**20,
            report.bytes_after / 2**20,
        )
    return report


def _keeps_all_but(dead: set[str]) -> Callable[[dict[str, Any]], bool]:
    def keep(record: dict[str, Any]) -> bool:
        return record.get("event_id") not in dead

    return keep


def _compact_webhook_files(run: Path, log: Path, report: RetentionReport) -> None:
    """The webhook's delivered ledger and dead-letter file of ``run``, compacted to the (compacted) ``log``."""
    ledger = run / WEBHOOK_DELIVERED
    if ledger.is_file():

        def ledger_rule() -> Callable[[bytes], bool]:
            keys = {event_key(rec) for rec in logged_records(log)}
            return lambda raw: raw.decode("utf-8", "replace").strip() in keys

        size_before = ledger.stat().st_size
        report.ledger_keys_dropped += _compact(ledger, ledger_rule)[1]
        report.bytes_freed += max(0, size_before - ledger.stat().st_size)
    dead_letter = run / WEBHOOK_DEAD_LETTER
    if dead_letter.is_file():

        def dead_letter_rule() -> Callable[[bytes], bool]:
            incidents = {rec.event_id for rec in logged_records(log)}

            def keep(raw: bytes) -> bool:
                if _parse(raw) is None:
                    return False  # torn (a crash mid-write)
                event = dead_letter_event(raw)
                return event is None or event["event_id"] in incidents  # a line of a shape unknown here stays

            return keep

        size_before = dead_letter.stat().st_size
        report.dead_letters_dropped += _compact(dead_letter, dead_letter_rule)[1]
        report.bytes_freed += max(0, size_before - dead_letter.stat().st_size)


def _orphan_clips(run: Path, log: Path, older_than_unix_s: float, report: RetentionReport) -> int:
    """Delete clip files of ``run/clips`` that no event of the (compacted) log points to, once older than
    the cut-off (a clip still being recorded is already referenced: its start event is logged first)."""
    folder = (run / "clips").resolve()
    if not folder.is_dir():
        return 0
    referenced = {p for inc in _incidents(run, log).values() for p in inc.clips}
    deleted = 0
    for f in folder.iterdir():
        if not f.is_file() or f in referenced:
            continue
        if f.suffix not in _CLIP_SUFFIXES and not f.name.endswith(".partial"):
            continue
        st = f.stat()
        if st.st_mtime < older_than_unix_s:
            f.unlink()
            report.bytes_freed += st.st_size
            deleted += 1
    return deleted


class RetentionTask:
    """Runs :func:`prune` over :func:`discover_runs` of ``root`` every ``section.interval_s`` on a daemon
    thread (the first pass at start). A failing pass is logged and retried at the next interval."""

    def __init__(self, root: str | os.PathLike[str], section: RetentionSection, *, event_log: str = "events.jsonl"):
        self.root = Path(root)
        self.section = section
        self.event_log = event_log
        self.passes = 0
        self.last_report: RetentionReport | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> RetentionReport:
        report = prune(discover_runs(self.root, self.event_log), self.section, event_log=self.event_log)
        self.last_report = report
        self.passes += 1
        return report

    def start(self) -> None:
        if not self.section.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                self.last_error = None
            except OSError as exc:  # a full or read-only disk: try again later, never end the app
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("retention pass over %s failed: %s", self.root, exc)
            self._stop.wait(self.section.interval_s)
