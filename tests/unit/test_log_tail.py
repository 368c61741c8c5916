"""`nexara watch` prints the events logged while it runs: a run folder used again (``make demo``) does not
replay an earlier run's alerts, a torn last line waits for its end, and a compacted log prints nothing twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.watch import LogTail

pytestmark = pytest.mark.unit


def test_tail_starts_at_the_end_and_follows(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    assert LogTail(log).new_lines() == []  # no log yet
    log.write_bytes(b'{"earlier": 1}\n{"earlier": 2}\n')
    tail = LogTail(log)
    assert tail.new_lines() == []  # an earlier run's events are not printed again
    with log.open("ab") as f:
        f.write(b'{"now": 1}\n\n{"now": 2')  # the second line is still being written
    assert tail.new_lines() == [b'{"now": 1}']
    with log.open("ab") as f:
        f.write(b"}\n")
    assert tail.new_lines() == [b'{"now": 2}']
    assert tail.new_lines() == []


def test_tail_after_compaction_prints_nothing_twice(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    tail = LogTail(log)
    log.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": 3}\n')
    assert len(tail.new_lines()) == 3
    log.write_bytes(b'{"c": 3}\n')  # retention dropped the first two
    assert tail.new_lines() == []
    with log.open("ab") as f:
        f.write(b'{"d": 4}\n')
    assert tail.new_lines() == [b'{"d": 4}']
