"""Append-only JSON Lines event log: the durable record written before any delivery (webhook, clip).

Each :meth:`EventLog.append` is one ``os.write`` of one complete line to a file opened with
``O_APPEND``, followed by ``os.fsync`` before it returns, so an event the caller was told about
survives a process kill or a power cut. A crash in the middle of a write can leave a torn last line;
reading skips (and counts) any line that does not parse, and opening a log whose last line is torn
starts the next append on a fresh line, so earlier and later events are never lost.

(event_id, kind, seq) is the idempotency key: appending the same message twice (a retried actor
call) stores it once. The set of keys is rebuilt from the file when the log is opened. Appends from
threads of one process are serialised by a lock; every write also holds the log's shared sidecar lock
(:mod:`actors.log_lock`) and reopens the file if retention replaced it, so a compaction loses no line.

Reviews (an operator's verdict on an incident, :class:`ReviewRecord`) are lines of the same file marked
``"record": "review"``: append-only like events (the latest review of an event wins, all are kept), read
by :meth:`EventLog.reviews` and never returned by :meth:`EventLog.read`. They are written by the HTTP
ingress while stream actors append events; each line is still one ``O_APPEND`` write.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.confirmation import AlertEvent
from actors.log_lock import APPEND_FLAGS, log_lock, reopen_if_replaced
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

MAX_READ_LIMIT = 10_000


class EventRecord(BaseModel):
    """One line of the event log (the on-disk form of :class:`~actors.confirmation.AlertEvent`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1)
    kind: Literal["start", "update", "end"]
    seq: int = Field(ge=0)
    camera_id: str = Field(min_length=1)
    start_s: float
    end_s: float | None = None
    at_s: float
    peak_probability: float = Field(ge=0.0, le=1.0)
    mean_probability: float = Field(ge=0.0, le=1.0)
    tier: str
    windows: int = Field(ge=0)
    end_reason: Literal["quiet", "max_duration", "stream_end", "interrupted", "shutdown", "removed"] | None = None
    clip_path: str | None = None
    logged_unix_s: float | None = None
    #: member probabilities of the peak window (absent in logs written before they were logged)
    members: dict[str, float] | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.event_id, self.kind, self.seq)


class ReviewRecord(BaseModel):
    """An operator's verdict on one incident (all its start/update/end lines share ``event_id``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record: Literal["review"] = "review"
    review_id: str = Field(min_length=1, max_length=64)
    event_id: str = Field(min_length=1)
    verdict: Literal["confirmed", "dismissed"]
    user: str = Field(min_length=1, max_length=64)
    note: str | None = Field(None, max_length=2000)
    reviewed_unix_s: float


def latest_reviews(reviews: list[ReviewRecord]) -> dict[str, ReviewRecord]:
    """The review in force per event id: the last one appended (log order)."""
    return {r.event_id: r for r in reviews}


class EventLog:
    """Durable, append-only, idempotent event log at ``path`` (created with its folder if absent)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._keys: set[tuple[str, str, int]] = set()
        #: lines skipped by the last full scan (torn or invalid).
        self.bad_lines = 0
        for record in self._scan():
            self._keys.add(record.key)
        self._fd = os.open(self.path, APPEND_FLAGS, 0o644)
        self._heal_torn_tail()

    def _heal_torn_tail(self) -> None:
        # A torn last line has no newline; without one the next append would be glued onto it.
        with self._lock, log_lock(self.path, exclusive=False):
            self._fd = reopen_if_replaced(self._fd, self.path)
            size = os.fstat(self._fd).st_size
            if size == 0:
                return
            with self.path.open("rb") as f:
                f.seek(size - 1)
                last = f.read(1)
            if last != b"\n":
                logger.warning("event log %s ends with a torn line; the next event starts on a new line", self.path)
                os.write(self._fd, b"\n")
                os.fsync(self._fd)

    def submit(self, event: AlertEvent | Mapping[str, Any]) -> None:
        """The durable :class:`~actors.sinks.Sink`: :meth:`append` of the event's logged fields
        (delivery-only fields such as ``source_id`` are not part of the record)."""
        data = event.to_dict() if isinstance(event, AlertEvent) else dict(event)
        self.append({k: v for k, v in data.items() if k in EventRecord.model_fields})

    def stats(self) -> dict[str, int]:
        return {"logged": len(self), "bad_lines": self.bad_lines}

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the file (``timeout_s``: the :class:`~actors.sinks.Sink` signature; writes never wait)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._keys)

    def append(self, event: AlertEvent | dict[str, Any]) -> bool:
        """Write one event durably (flushed and fsynced before returning). Returns False, writing
        nothing, when the same (event_id, kind, seq) is already in the log."""
        data = event.to_dict() if isinstance(event, AlertEvent) else dict(event)
        data.setdefault("logged_unix_s", time.time())
        record = EventRecord.model_validate(data)
        line = (record.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            if self._fd < 0:
                raise InvalidInputError(f"event log {self.path} is closed")
            if record.key in self._keys:
                logger.debug("event %s/%s/%d already logged; skipped", *record.key)
                return False
            with log_lock(self.path, exclusive=False):
                self._fd = reopen_if_replaced(self._fd, self.path)
                self._write_all(line)
            self._keys.add(record.key)
        return True

    def _write_all(self, line: bytes) -> None:
        # One write of the whole line: O_APPEND keeps it contiguous; fsync makes it durable.
        written = os.write(self._fd, line)
        while written < len(line):
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)

    def append_review(
        self, event_id: str, verdict: str, user: str, note: str | None = None, *, require_event: bool = True
    ) -> ReviewRecord:
        """Append a review of ``event_id`` durably (fsynced); raises :class:`InvalidInputError` for a bad
        verdict or note, or (``require_event``) an event id the log does not hold, writing nothing."""
        if require_event and not any(key[0] == event_id for key in self._keys_now()):
            raise InvalidInputError(f"no event {event_id} in {self.path}")
        try:
            review = ReviewRecord(
                review_id=uuid.uuid4().hex,
                event_id=event_id,
                verdict=verdict,  # type: ignore[arg-type]
                user=user,
                note=note or None,
                reviewed_unix_s=time.time(),
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidInputError(f"review {where}: {first.get('msg')}") from None
        self._write_line((review.model_dump_json() + "\n").encode("utf-8"))
        return review

    def reviews(self, event_id: str | None = None) -> list[ReviewRecord]:
        """Every review in log order (of ``event_id`` only when given)."""
        return [r for r in self._scan_reviews() if event_id is None or r.event_id == event_id]

    def _keys_now(self) -> set[tuple[str, str, int]]:
        # events appended by other processes (the stream actors) since this log was opened count too
        for record in self._scan():
            self._keys.add(record.key)
        return self._keys

    def _write_line(self, line: bytes) -> None:
        with self._lock:
            if self._fd < 0:
                raise InvalidInputError(f"event log {self.path} is closed")
            with log_lock(self.path, exclusive=False):
                self._fd = reopen_if_replaced(self._fd, self.path)
                self._write_all(line)

    def read(
        self,
        camera_id: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[EventRecord]:
        """Events in log order, filtered by camera and by ``at_s`` (stream seconds of the event:
        ``since_s <= at_s < until_s``), then paginated by ``offset`` and ``limit``."""
        if offset < 0:
            raise InvalidInputError(f"offset must be >= 0, got {offset}")
        if not 0 <= limit <= MAX_READ_LIMIT:
            raise InvalidInputError(f"limit must be in [0, {MAX_READ_LIMIT}], got {limit}")
        out: list[EventRecord] = []
        skipped = 0
        for record in self._scan():
            if camera_id is not None and record.camera_id != camera_id:
                continue
            if since_s is not None and record.at_s < since_s:
                continue
            if until_s is not None and record.at_s >= until_s:
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(out) >= limit:
                break
            out.append(record)
        return out

    def records(self) -> Iterator[EventRecord]:
        """Every event in log order (no filter, no page: recovery at a camera's start reads them all)."""
        return self._scan()

    def _scan(self) -> Iterator[EventRecord]:
        bad = 0
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            self.bad_lines = 0
            return
        complete = False
        try:
            with f:
                for number, raw in enumerate(f, start=1):
                    if not raw.strip() or is_review_line(raw):
                        continue
                    try:
                        record = EventRecord.model_validate_json(raw)
                    except ValidationError as exc:
                        bad += 1
                        logger.warning(
                            "event log %s line %d is torn or invalid; skipped (%d error(s))",
                            self.path,
                            number,
                            exc.error_count(),
                        )
                        continue
                    yield record
            complete = True
        finally:
            # Only a full pass knows the count; an early stop (pagination) keeps the last one.
            if complete:
                self.bad_lines = bad

    def _scan_reviews(self) -> Iterator[ReviewRecord]:
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return
        with f:
            for number, raw in enumerate(f, start=1):
                if not is_review_line(raw):
                    continue
                try:
                    yield ReviewRecord.model_validate_json(raw)
                except ValidationError:
                    logger.warning("event log %s line %d: torn or invalid review; skipped", self.path, number)


def is_review_line(raw: bytes | str) -> bool:
    """A review line of the log (cheap test first: event lines never contain the marker)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if b'"record"' not in raw:
        return False
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("record") == "review"
