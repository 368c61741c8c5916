"""Live, default settings: alerts on long ordinary streams (any alert is a false alarm) and on fights
spliced into ordinary streams, through the whole live path (``nexara watch``: Serve app, stream actors,
windowing, the model, confirmation, the event log).

Streams are composed from the shared clips of both datasets (``../shared/data/surveillance-fight`` and
``../shared/data/vioperu``, or ``$NEXARA_SHARED``), 640x360 at 25 fps, into ``--work``:

* ordinary: no-fight clips of both datasets (VioPeru's hard negatives included), shuffled, back to back,
  ``--ordinary-min`` minutes in all, split over ``--singles`` single-camera streams and the 4 cells of one 2x2
  monitor wall (each cell its own playlist);
* fights: ``--fights`` fight clips (half from each dataset), each played once between ``--gap-s`` seconds
  of ordinary clips, in two streams; a fight counts as detected when an alert starts between its first
  frame and window + k hops + 2 s after it; an alert that starts elsewhere is a false alarm.

Files are read as fast as the model scores them (``--pacing fast``: a stream waits for room rather than
drop windows), so the figures do not depend on this machine keeping up in real time. The shipped model
was trained on these clips: the figures show the product's live behaviour, not generalisation (for that,
see ``bench_operating_point.py``, which replays out-of-fold scores).

    .venv/bin/python benchmarks/bench_quiet.py [--model DIR] [--config FILE] [--work runs/bench_quiet]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")).resolve() / "data"
DATASETS = ("surveillance-fight", "vioperu")
HW = (360, 640)
FPS = 25
SLACK_S = 2.0


def clips(label: str) -> list[str]:
    out = []
    for d in DATASETS:
        with open(SHARED / d / "clips.csv", newline="") as f:
            out += [str(SHARED / d / r["clip"]) for r in csv.DictReader(f) if r["label"] == label]
    return out


def compose(work: Path, singles: int, ordinary_min: float, fights: int, gap_s: float, seed: int) -> dict[str, Any]:
    """The streams (cached in ``work/streams.json``): path -> kind, cell playlists, fight spans."""
    from actors.compose import compose_wall_video, concat_clips
    from nexara.media import probe

    index = work / "streams.json"
    if index.is_file():
        return json.loads(index.read_text())
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ordinary = clips("noFight")
    rng.shuffle(ordinary)
    parts = singles + 4  # single streams + the wall's 4 cells
    target_s = ordinary_min * 60 / parts
    share: list[list[str]] = [[] for _ in range(parts)]
    pool = iter(ordinary)
    for part in share:
        seconds = 0.0
        while seconds < target_s:
            part.append(next(pool))
            seconds += probe(part[-1]).duration_s
    streams: dict[str, Any] = {}
    for i in range(singles):
        path = work / f"ordinary-{i}.mp4"
        segs = concat_clips(share[i], path, size_hw=HW, fps=FPS)
        streams[str(path)] = {"kind": "ordinary", "cells": 1, "seconds": segs[-1].end_s}
    wall = work / "ordinary-wall-2x2.mp4"
    cells = compose_wall_video(share[singles:], wall, rows=2, cols=2, cell_hw=HW, fps=FPS)
    streams[str(wall)] = {"kind": "ordinary", "cells": 4, "seconds": max(c[-1].end_s for c in cells)}
    by_dataset = {d: [c for c in clips("fight") if f"/{d}/" in c] for d in DATASETS}
    chosen = [c for d in DATASETS for c in rng.sample(by_dataset[d], fights // 2)]
    rng.shuffle(chosen)
    fillers = iter([c for c in ordinary if not any(c in part for part in share)] + ordinary)
    for s in range(2):
        playlist: list[str] = []
        for fight in chosen[s::2]:
            filler_s = 0.0
            while filler_s < gap_s:
                c = next(fillers)
                playlist.append(c)
                filler_s += probe(c).duration_s
            playlist.append(fight)
        playlist += [next(fillers) for _ in range(3)]
        path = work / f"fights-{s}.mp4"
        segs = concat_clips(playlist, path, size_hw=HW, fps=FPS)
        spans = [(g.start_s, g.end_s) for g in segs if g.path in chosen]
        streams[str(path)] = {"kind": "fights", "cells": 1, "seconds": segs[-1].end_s, "fights": spans}
    index.write_text(json.dumps(streams, indent=1))
    return streams


def run_watch(streams: dict[str, Any], args: argparse.Namespace) -> tuple[Path, float]:
    run_dir = args.work / f"run-{time.strftime('%Y%m%dT%H%M%S')}"
    singles = [p for p, s in streams.items() if s["cells"] == 1]
    walls = [p for p, s in streams.items() if s["cells"] == 4]
    cmd = [str(REPO / ".venv" / "bin" / "nexara")]
    if args.config:
        cmd += ["--config", str(args.config)]
    t0 = time.perf_counter()
    for group, grid in ((singles, None), (walls, "2x2")):
        c = [*cmd, "watch", *group, "--pacing", "fast", "--run-dir", str(run_dir / (grid or "single"))]
        if grid:
            c += ["--grid", grid]
        subprocess.run(c, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return run_dir, time.perf_counter() - t0


def starts(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for log in run_dir.glob("*/events.jsonl"):
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("kind") == "start":
                out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, help="nexara config (serve.model_dir picks the model)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_quiet")
    ap.add_argument("--singles", type=int, default=2)
    ap.add_argument("--ordinary-min", type=float, default=11.0, help="ordinary footage in total (cell minutes)")
    ap.add_argument("--fights", type=int, default=20)
    ap.add_argument("--gap-s", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from nexara.config import load_config

    cfg = load_config(args.config) if args.config else load_config(None)
    streams = compose(args.work, args.singles, args.ordinary_min, args.fights, args.gap_s, args.seed)
    run_dir, wall_s = run_watch(streams, args)
    events = starts(run_dir)
    conf, win = cfg.confirmation, cfg.windows
    due_s = win.window_s + conf.k * win.stride_s + SLACK_S
    ordinary_min = sum(s["seconds"] * s["cells"] for s in streams.values() if s["kind"] == "ordinary") / 60
    false_ordinary = [e for e in events if "ordinary" in e["camera_id"]]
    detected, latencies, outside = 0, [], []
    fights_total = 0
    for path, s in streams.items():
        if s["kind"] != "fights":
            continue
        cam = Path(path).stem
        mine = [e for e in events if e["camera_id"] == cam]
        used = set()
        for onset, end in s["fights"]:
            fights_total += 1
            hits = [e for e in mine if onset < e["at_s"] <= onset + due_s]
            if hits:
                detected += 1
                latencies.append(hits[0]["at_s"] - onset)
            used |= {e["event_id"] for e in mine if onset - win.window_s < e["at_s"] <= end + due_s}
        outside += [e for e in mine if e["event_id"] not in used]
    fight_min = sum(s["seconds"] for s in streams.values() if s["kind"] == "fights") / 60
    summary = {
        "model": str(cfg.serve.model_dir or "default"),
        "confirmation": conf.model_dump(exclude={"tiers"}),
        "ordinary_cell_minutes": round(ordinary_min, 1),
        "alerts_on_ordinary": len(false_ordinary),
        "fight_stream_minutes": round(fight_min, 1),
        "fights": fights_total,
        "detected_within_s": round(due_s, 1),
        "detected": detected,
        "median_latency_s": round(sorted(latencies)[len(latencies) // 2], 2) if latencies else None,
        "alerts_outside_fights": len(outside),
        "wall_s": round(wall_s, 1),
        "run_dir": str(run_dir),
    }
    print(json.dumps(summary, indent=1))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
