"""`nexara dataset from-reviews`: a live run on a real composed 2x2 wall (cell evidence clips recorded by
the clip recorder, events and reviews in a real event log) becomes clips + clips.csv (confirmed: fight,
dismissed: noFight hard negative, source: camera id), which `nexara dataset scan` merges with shared
clips into one manifest; bad input is a clear error and writes nothing."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest

from actors.compose import compose_wall_video
from actors.event_log import EventLog
from actors.grid import wall_boxes
from actors.recorder import ClipRecorder
from nexara.cli import main

pytestmark = pytest.mark.unit

CELL_HW = (120, 160)
CELLS = ["noFight/nofi001.mp4", "noFight/nofi002.mp4", "fight/fi001.mp4", "noFight/nofi003.mp4"]
SHARED_ROWS = ["fight/fi002.mp4", "fight/fi003.mp4", "noFight/nofi006.mp4", "noFight/nofi007.mp4"]


def feed(rec: ClipRecorder, path: Path) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rec.start_stream(stream)
        origin = stream.start_time or 0
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None and packet.time_base is not None:
                rec.push(packet, float((packet.pts - origin) * packet.time_base))


@pytest.fixture(scope="module")
def run_dir(shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A live run folder: events.jsonl with five incidents on wall cells, cell clips, four reviews."""
    import sys

    tests = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(tests))
    from events_factory import make_event

    run = tmp_path_factory.mktemp("runs") / "20261125-160000"
    wall = run.parent / "wall.mp4"
    compose_wall_video(
        [[shared_clips / c] for c in CELLS], wall, rows=2, cols=2, cell_hw=CELL_HW, fps=10, duration_s=8.0
    )
    boxes = wall_boxes(*CELL_HW, 2, 2)
    rec = ClipRecorder(run / "clips", pre_s=1.5, post_s=1.5)
    log = EventLog(run / "events.jsonl")
    cells = {1: "wall-r1c0", 2: "wall-r0c1", 3: "wall-r1c0", 4: "wall-r1c1", 5: "wall-r0c0"}
    box_of = {"wall-r0c0": boxes[0], "wall-r0c1": boxes[1], "wall-r1c0": boxes[2], "wall-r1c1": boxes[3]}
    for i, cam in cells.items():
        event = make_event(i, camera_id=cam)
        if i != 3:  # incident 3 has no clip (clips were off for it)
            b = box_of[cam]
            path = rec.request(event.event_id, float(i), crop=(b.x0, b.y0, b.x1, b.y1))
            event = replace(event, clip_path=str(path))
        log.append(event)
        log.append(replace(make_event(i, kind="end", seq=1, camera_id=cam), clip_path=event.clip_path))
    feed(rec, wall)
    rec.close()
    log.append_review("wall-r1c0-1000-1", "confirmed", "op")
    log.append_review("wall-r0c1-2000-2", "confirmed", "op")
    log.append_review("wall-r0c1-2000-2", "dismissed", "op", "a hug")  # the latest review wins
    log.append_review("wall-r1c0-3000-3", "confirmed", "op")  # no clip: skipped
    log.append_review("wall-r0c0-5000-5", "dismissed", "op")
    log.close()  # incident 4 is never reviewed
    return run


def test_reviewed_run_becomes_a_dataset_that_scans_beside_shared_clips(
    run_dir: Path, shared_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reviews"
    assert main(["dataset", "from-reviews", str(run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 clips: 1 fight (confirmed), 2 noFight hard negatives (dismissed); 1 reviewed" in printed
    assert "wall-r1c0-3000-3: no evidence clip was recorded" in printed

    with (out / "clips.csv").open(newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["clip"])
    assert sorted((r["label"], r["source"], r["hard_negative"]) for r in rows) == [
        ("fight", "wall-r1c0", "false"),
        ("noFight", "wall-r0c0", "true"),
        ("noFight", "wall-r0c1", "true"),
    ]
    for r in rows:
        clip = out / r["clip"]
        assert clip.is_file() and r["clip"].startswith(f"clips/{r['label']}/")
        with av.open(str(clip)) as c:  # the cell crop, not the wall
            cc = c.streams.video[0].codec_context
            assert (cc.width, cc.height) == (CELL_HW[1], CELL_HW[0]) and cc.name == "h264"

    shared_csv = tmp_path / "shared.csv"
    shared_csv.write_text(
        "clip,label,source\n"
        + "".join(f"{shared_clips / c},{c.split('/')[0]},src{i // 2}\n" for i, c in enumerate(SHARED_ROWS))
    )
    manifest = tmp_path / "m.parquet"
    csvs = ["--csv", f"sf={shared_csv}", "--csv", f"reviews={out / 'clips.csv'}"]
    assert main(["dataset", "scan", *csvs, "--out", str(manifest)]) == 0
    table = pq.read_table(manifest).to_pylist()
    assert len(table) == 7 and all(r["error"] is None for r in table)
    reviewed = sorted((r["source"], r["label"], r["hard_negative"]) for r in table if r["dataset"] == "reviews")
    assert reviewed == [("wall-r0c0", 0, True), ("wall-r0c1", 0, True), ("wall-r1c0", 1, False)]
    assert {r["dataset"] for r in table} == {"sf", "reviews"}


def test_bad_input_is_a_clear_error_and_writes_nothing(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["dataset", "from-reviews", str(tmp_path), "--out", str(out)]) == 2
    assert "is not a live run folder: it has no event log events.jsonl" in capsys.readouterr().err
    empty = tmp_path / "empty-run"
    log = EventLog(empty / "events.jsonl")
    log.close()
    assert main(["dataset", "from-reviews", str(empty), "--out", str(out)]) == 2
    assert "no reviewed incident with an evidence clip" in capsys.readouterr().err
    assert not out.exists()
