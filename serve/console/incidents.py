"""Incidents for the console: the start/update/end lines of one event id folded into one row, with its
score trace and the review in force (the latest), read from the event log."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from actors.event_log import MAX_READ_LIMIT, EventLog, EventRecord, ReviewRecord, latest_reviews


def fold(events: Iterable[EventRecord], reviews: Iterable[ReviewRecord]) -> dict[str, dict[str, Any]]:
    """One incident per event id, in the order the incidents started."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        inc = out.get(e.event_id)
        if inc is None:
            inc = out[e.event_id] = {
                "event_id": e.event_id,
                "camera_id": e.camera_id,
                "start_s": e.start_s,
                "first_logged_unix_s": e.logged_unix_s,
                "trace": [],
                "clip_path": None,
                "review": None,
                "reviews": 0,
                "members": None,
            }
        inc.update(
            state="ended" if e.kind == "end" else "open",
            end_s=e.end_s,
            at_s=e.at_s,
            peak_probability=e.peak_probability,
            mean_probability=e.mean_probability,
            tier=e.tier,
            windows=e.windows,
            end_reason=e.end_reason,
            last_logged_unix_s=e.logged_unix_s,
        )
        if e.members is not None:  # the peak window's members (logs before they were logged have none)
            inc["members"] = e.members
        inc["clip_path"] = e.clip_path or inc["clip_path"]
        inc["trace"].append(
            {
                "kind": e.kind,
                "at_s": e.at_s,
                "peak": e.peak_probability,
                "mean": e.mean_probability,
                "windows": e.windows,
            }
        )
    review_list = list(reviews)
    for r in review_list:
        if r.event_id in out:
            out[r.event_id]["reviews"] += 1
    for event_id, r in latest_reviews(review_list).items():
        if event_id in out:
            out[event_id]["review"] = r.model_dump(mode="json")
    for inc in out.values():
        inc["has_clip"] = inc.pop("clip_path") is not None
    return out


def read_incidents(log_path: Path) -> dict[str, dict[str, Any]]:
    """The folded incidents of the log at ``log_path`` (none while it does not exist)."""
    if not log_path.exists():
        return {}
    log = EventLog(log_path)
    try:
        return fold(log.read(limit=MAX_READ_LIMIT), log.reviews())
    finally:
        log.close()


def clip_file(log_path: Path, event_id: str) -> tuple[bool, str | None]:
    """(event known, clip path recorded for it) from the log."""
    if not log_path.exists():
        return False, None
    log = EventLog(log_path)
    try:
        found, clip = False, None
        for r in log.read(limit=MAX_READ_LIMIT):
            if r.event_id == event_id:
                found, clip = True, r.clip_path or clip
        return found, clip
    finally:
        log.close()
