"""What a camera's new stream actor does about the one before it, when that one died (its process killed, a
node lost, `nexara watch` killed and started again on the same run folder).

The event log is the durable record; the sinks' queues are memory. So at start, before its first frame, a
source's worker (:func:`actors.stream.worker_from_config`):

* closes every incident of its cameras that the log holds open (a start, no end): an ``end`` with reason
  ``interrupted``, at the last time the log knows (:func:`close_interrupted`) -- the confirmer that would
  have ended it is gone, and a new incident would otherwise overlap a start that never ends;
* hands the webhook every logged event of its cameras that the webhook neither delivered (its delivered
  ledger, :class:`actors.webhook.WebhookSink` ``delivered_path``) nor dead-lettered
  (:func:`undelivered`): an event logged while the receiver was away, or queued when the process died, is
  delivered late rather than never. A request that reached the receiver just before the kill, with its 2xx
  not yet in the ledger, is sent again with the same ``webhook-id``: receivers drop it by that key.

Only the dead actor's own cameras are touched: the source id, its configured cell ids, and the default wall
cell ids ``<source>-r<row>c<col>``. Call these only when no other actor runs that source.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from actors.event_log import EventLog, EventRecord, is_review_line
from actors.sinks import idempotency_key

__all__ = [
    "close_interrupted",
    "dead_letter_event",
    "delivered_keys",
    "event_key",
    "logged_records",
    "source_cameras",
    "undelivered",
]

logger = logging.getLogger(__name__)


def source_cameras(source_id: str, cell_ids: Sequence[str] | None = None) -> Callable[[str], bool]:
    """Whether a camera id is one of source ``source_id``'s cameras (itself, or one of its wall cells)."""
    named = set(cell_ids or ())
    cell = re.compile(re.escape(source_id) + r"-r\d+c\d+")
    return lambda camera_id: camera_id == source_id or camera_id in named or cell.fullmatch(camera_id) is not None


def close_interrupted(log: EventLog, cameras: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Append an ``end`` (reason ``interrupted``) for every incident of ``cameras`` left open in ``log``;
    returns the appended events (to hand to the sinks)."""
    last: dict[str, EventRecord] = {}
    ended: set[str] = set()
    for rec in log.records():
        if not cameras(rec.camera_id):
            continue
        if rec.kind == "end":
            ended.add(rec.event_id)
        last[rec.event_id] = rec
    out = []
    for event_id, rec in last.items():
        if event_id in ended:
            continue
        data = rec.model_dump(mode="json")
        data.update(kind="end", seq=rec.seq + 1, end_s=rec.at_s, end_reason="interrupted", logged_unix_s=time.time())
        if log.append(data):
            logger.warning("incident %s of camera %s was left open by a dead actor: ended (interrupted)",
                           event_id, rec.camera_id)  # fmt: skip
            out.append(data)
    return out


def event_key(rec: EventRecord) -> str:
    """The webhook's idempotency key of a logged event: what its delivered ledger holds once it got a 2xx."""
    return idempotency_key(rec.model_dump(mode="json", include={"event_id", "kind", "seq"}))


def logged_records(log_path: str | os.PathLike[str]) -> Iterator[EventRecord]:
    """The events of the log at ``log_path`` as :meth:`EventLog.records` reads them (reviews, torn and invalid
    lines skipped), without opening it for appending (retention reads a log that live actors append to)."""
    try:
        f = open(log_path, "rb")
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            if not raw.strip() or is_review_line(raw):
                continue
            try:
                yield EventRecord.model_validate_json(raw)
            except ValidationError:
                continue


def dead_letter_event(raw: bytes) -> dict[str, Any] | None:
    """The event of one dead-letter line (:class:`actors.webhook.WebhookSink`), or None for a torn line."""
    try:
        event = json.loads(raw)["event"]
        idempotency_key(event)
    except (ValueError, KeyError, TypeError):
        return None
    return event if isinstance(event, dict) else None


def delivered_keys(delivered_path: Path, dead_letter_path: Path) -> set[str]:
    """Idempotency keys the webhook delivered (its ledger) or gave up on (its dead-letter file)."""
    keys: set[str] = set()
    if delivered_path.exists():
        keys.update(x.strip() for x in delivered_path.read_text(errors="replace").splitlines() if x.strip())
    if dead_letter_path.exists():
        for raw in dead_letter_path.read_bytes().splitlines():
            event = dead_letter_event(raw)
            if event is not None:  # a torn last line: its event is sent again (the receiver drops it by key)
                keys.add(idempotency_key(event))
    return keys


def undelivered(
    log: EventLog, cameras: Callable[[str], bool], delivered_path: Path, dead_letter_path: Path, source_id: str
) -> list[dict[str, Any]]:
    """Logged events of ``cameras`` the webhook has no record of, in log order, in the shape the live path
    posts them (the record's fields less ``members``, plus ``source_id``)."""
    done = delivered_keys(delivered_path, dead_letter_path)
    out = []
    for rec in log.records():
        if cameras(rec.camera_id):
            if event_key(rec) not in done:
                out.append({**rec.model_dump(mode="json", exclude={"members"}), "source_id": source_id})
    return out
