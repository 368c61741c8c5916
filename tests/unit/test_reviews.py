"""Review records in the event log: append-only lines beside the events, never read as events, the
latest per event in force, kept across reopening (a restart), folded into console incidents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from actors.event_log import EventLog, latest_reviews
from nexara.errors import InvalidInputError
from serve.console.incidents import fold, read_incidents


def _event(event_id: str, kind: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "kind": kind,
        "seq": seq,
        "camera_id": "cam",
        "start_s": 1.0,
        "end_s": 3.0 if kind == "end" else None,
        "at_s": 2.0 + seq,
        "peak_probability": 0.8,
        "mean_probability": 0.7,
        "tier": "alert",
        "windows": 2 + seq,
        **extra,
    }


def test_reviews_are_lines_of_the_log_that_event_reads_skip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.append(_event("e1", "start", 0))
        first = log.append_review("e1", "dismissed", "oli", "a hug")
        log.append(_event("e1", "end", 1))
        second = log.append_review("e1", "confirmed", "ada")
        assert [r.kind for r in log.read()] == ["start", "end"]
        assert log.bad_lines == 0 and len(log) == 2
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[1] == {
        "record": "review",
        "review_id": first.review_id,
        "event_id": "e1",
        "verdict": "dismissed",
        "user": "oli",
        "note": "a hug",
        "reviewed_unix_s": first.reviewed_unix_s,
    }
    with EventLog(path) as log:  # reopened, as after a restart
        reviews = log.reviews()
        assert [r.review_id for r in reviews] == [first.review_id, second.review_id]
        assert latest_reviews(reviews)["e1"].verdict == "confirmed"
        assert log.reviews("other") == [] and log.bad_lines == 0


def test_a_refused_review_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.append(_event("e1", "start", 0))
        before = path.read_bytes()
        with pytest.raises(InvalidInputError, match="no event nope"):
            log.append_review("nope", "confirmed", "oli")
        with pytest.raises(InvalidInputError, match="verdict"):
            log.append_review("e1", "maybe", "oli")
        with pytest.raises(InvalidInputError, match="note"):
            log.append_review("e1", "confirmed", "oli", "x" * 3000)
        assert path.read_bytes() == before


def test_an_event_appended_by_another_writer_can_be_reviewed(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    reviewer = EventLog(path)  # opened before the stream actor logs the event
    with EventLog(path) as actor_log:
        actor_log.append(_event("late", "start", 0))
    assert reviewer.append_review("late", "confirmed", "oli").event_id == "late"
    reviewer.close()


def test_a_torn_review_line_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.append(_event("e1", "start", 0))
        log.append_review("e1", "confirmed", "oli")
    with path.open("ab") as f:
        f.write(b'{"record": "review", "review_id": "x", "event_')
    with EventLog(path) as log:
        assert len(log.reviews()) == 1 and [r.kind for r in log.read()] == ["start"]
        assert log.bad_lines == 1
        log.append_review("e1", "dismissed", "oli")
        assert [r.verdict for r in log.reviews()] == ["confirmed", "dismissed"]


def test_incidents_fold_start_update_end_with_trace_and_latest_review(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.append(_event("a", "start", 0, clip_path="/clips/a.mp4"))
        log.append(_event("b", "start", 0))
        log.append(_event("a", "update", 1, peak_probability=0.9))
        log.append(_event("a", "end", 2, end_reason="quiet"))
        log.append_review("a", "dismissed", "oli")
        log.append_review("a", "confirmed", "ada", "clear punch")
        log.append_review("b", "dismissed", "oli")
        incidents = fold(log.read(), log.reviews())
    assert list(incidents) == ["a", "b"]
    a, b = incidents["a"], incidents["b"]
    assert a["state"] == "ended" and b["state"] == "open"
    assert [p["kind"] for p in a["trace"]] == ["start", "update", "end"] and a["trace"][1]["peak"] == 0.9
    assert a["has_clip"] and not b["has_clip"] and a["end_reason"] == "quiet"
    assert a["review"]["verdict"] == "confirmed" and a["review"]["note"] == "clear punch" and a["reviews"] == 2
    assert read_incidents(path) == incidents
    assert read_incidents(tmp_path / "missing.jsonl") == {}
