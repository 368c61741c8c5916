"""Reviews feed training: the reviewed incidents of live runs become a clip dataset (``nexara dataset
from-reviews``). Each incident whose latest review is *confirmed* becomes a ``fight`` clip, each
*dismissed* one a ``noFight`` clip marked ``hard_negative`` (an ordinary scene the model flagged: exactly
what the next model should learn to leave alone); the source of a clip is its camera id, so grouped
cross-validation never splits one camera between training and evaluation. The clip is the incident's
evidence clip (a wall cell's own crop; see :mod:`actors.clip_encode`), copied into ``OUT/clips/<label>/``,
and ``OUT/clips.csv`` (``clip,label,source,hard_negative``) is what ``nexara dataset scan --csv`` reads,
beside the shared datasets (``--csv sf=... --csv reviews=OUT/clips.csv``).

Incidents reviewed but without a clip on disk (clips off, failed, or pruned by retention) are skipped
and counted. Pure logic plus file I/O: no Ray.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from actors.event_log import MAX_READ_LIMIT, EventLog, EventRecord, latest_reviews
from actors.recorder import safe_clip_name
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["LABELS", "ReviewExport", "export_reviewed_clips"]

#: review verdict -> (label in clips.csv, hard negative)
LABELS: dict[str, tuple[str, bool]] = {"confirmed": ("fight", False), "dismissed": ("noFight", True)}
CSV_NAME = "clips.csv"


@dataclass(slots=True)
class ReviewExport:
    csv_path: Path
    written: dict[str, int] = field(default_factory=lambda: {"fight": 0, "noFight": 0})
    skipped: list[str] = field(default_factory=list)  # "<run>/<event id>: why"

    @property
    def total(self) -> int:
        return sum(self.written.values())


def _all_events(log: EventLog) -> list[EventRecord]:
    out: list[EventRecord] = []
    while True:
        page = log.read(offset=len(out), limit=MAX_READ_LIMIT)
        out.extend(page)
        if len(page) < MAX_READ_LIMIT:
            return out


def export_reviewed_clips(
    run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], event_log: str = "events.jsonl"
) -> ReviewExport:
    """Copy the evidence clip of every reviewed incident of ``run_dirs`` into ``out_dir`` and write its
    ``clips.csv`` (atomically, last). Raises :class:`InvalidInputError` for a run folder without an event
    log, or when no reviewed incident has a clip (nothing is written then)."""
    if not run_dirs:
        raise InvalidInputError("from-reviews needs at least one run folder")
    runs = [Path(r) for r in run_dirs]
    for run in runs:
        if not (run / event_log).is_file():
            raise InvalidInputError(f"{run} is not a live run folder: it has no event log {event_log}")
    out = Path(out_dir)
    rows: list[tuple[Path, str, str, str, bool]] = []  # source file, target name, label, camera, hard negative
    result = ReviewExport(csv_path=out / CSV_NAME)
    for run in runs:
        with EventLog(run / event_log) as log:
            events = _all_events(log)
            reviews = latest_reviews(log.reviews())
        camera_of: dict[str, str] = {}
        clip_of: dict[str, str] = {}
        for e in events:
            camera_of.setdefault(e.event_id, e.camera_id)
            if e.clip_path:
                clip_of[e.event_id] = e.clip_path
        for event_id, review in reviews.items():
            where = f"{run.name}/{event_id}"
            if event_id not in camera_of:
                result.skipped.append(f"{where}: reviewed, but the event is not in the log")
                continue
            clip = clip_of.get(event_id)
            if clip is None:
                result.skipped.append(f"{where}: no evidence clip was recorded")
                continue
            src = Path(clip) if Path(clip).is_absolute() else run / clip
            if not src.is_file():
                result.skipped.append(f"{where}: evidence clip {src} is not on disk")
                continue
            label, hard = LABELS[review.verdict]
            name = f"{safe_clip_name(run.name)}-{safe_clip_name(event_id)}{src.suffix}"
            rows.append((src, name, label, camera_of[event_id], hard))
    for line in result.skipped:
        logger.warning("skipped %s", line)
    if not rows:
        raise InvalidInputError(
            f"no reviewed incident with an evidence clip in {', '.join(map(str, runs))} "
            f"({len(result.skipped)} reviewed incident(s) skipped)"
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["clip", "label", "source", "hard_negative"])
    for src, name, label, camera, hard in rows:
        rel = Path("clips") / label / name
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / rel)
        writer.writerow([rel.as_posix(), label, camera, "true" if hard else "false"])
        result.written[label] += 1
    tmp = out / f".{CSV_NAME}.partial"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, result.csv_path)
    return result
