"""The live operating point, chosen on out-of-fold window scores of both shared datasets.

A model on a clip backbone is cross-validated on the 2-s windows the live path scores (grouped by source,
so every window is scored by a model that never saw its camera). This benchmark replays those out-of-fold
window probabilities through the live path's own confirmation rule (:class:`actors.confirmation.Confirmer`)
as streams, and sweeps the rule's settings (enter threshold, k of n; exit threshold = enter - 0.2):

* **ordinary streams**: per source (camera) of each dataset, its no-fight clips (hard negatives included)
  played back to back; any alert is a false alarm;
* **fights**: each fight clip's windows spliced between ordinary windows of another source of its dataset;
  detected when an alert starts within window + k hops + 2 s of the fight's first frame.

Then it prints one table and the quietest setting with the best recall. Limits, said plainly: the store
holds windows inside clips only (no window straddles two clips, unlike a live stream) and a fight clip
shorter than one window gives one window (the live path, sampling every 0.5 s once a cell runs hot,
sees several overlapping ones), so a k >= 2 rule is charged more here than live; the setting is chosen on
the same scores it is reported on (optimistic by that selection).

    .venv/bin/python benchmarks/bench_operating_point.py --config configs/model-v2.yaml \\
        --features runs/v2/features --manifest runs/v2/manifest.parquet --out runs/v2/operating_point

The cross-validation (per dataset, and leave one dataset out) is reported in ``OUT/evaluate/report.md`` as
`nexara evaluate --lodo` writes it; its out-of-fold scores are cached in ``OUT/oof_windows.parquet`` (delete it to
cross-validate again).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENTER_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
KN_GRID = ((1, 1), (2, 2), (2, 3), (3, 4))
SPLICE_PREFIX_S = 20.0  # ordinary footage before a spliced fight
SPLICE_SUFFIX_S = 10.0
SLACK_S = 2.0  # the "window + k hops + 2 s"

log = logging.getLogger("bench_operating_point")


@dataclass(frozen=True, slots=True)
class Window:
    start_s: float
    end_s: float
    p: float


def oof_windows(args: argparse.Namespace) -> pa.Table:
    """One row per stored window with its out-of-fold ensemble probability (cached)."""
    cache = args.out / "oof_windows.parquet"
    if cache.is_file():
        log.info("out-of-fold window scores from %s", cache)
        return pq.read_table(cache)
    from nexara.config import load_config
    from training.pipeline import load_training_data, run_evaluate

    cfg = load_config(args.config)
    _, _, _, meta = load_training_data(args.features, cfg)
    ev = run_evaluate(args.features, args.out / "evaluate", cfg, k=args.cv, lodo=True, manifest=args.manifest)
    if ev.labels.clips is None or len(ev.labels.clips) != meta.num_rows:
        raise SystemExit(f"{args.features}: not a window store (train a model on a clip backbone)")
    table = pa.table(
        {
            "content_hash": meta.column("content_hash"),
            "path": meta.column("path"),
            "source": meta.column("source"),
            "label": meta.column("label"),
            "window_index": meta.column("window_index"),
            "start_s": meta.column("start_s"),
            "end_s": meta.column("end_s"),
            "dataset": pa.array([str(d) for d in ev.labels.datasets]),
            "hard_negative": pa.array(ev.labels.hard_negative.astype(bool)),
            "p": pa.array(ev.cv.oof_ensemble_probs.astype(np.float64)),
            **{f"p_{n}": pa.array(ev.cv.oof_member_probs[:, j]) for j, n in enumerate(ev.cv.member_names)},
        }
    )
    if ev.lodo is not None:  # leave one dataset out: each window scored by models that never saw its dataset
        table = table.append_column("lodo_p", pa.array(ev.lodo.oof_ensemble_probs.astype(np.float64)))
        for j, n in enumerate(ev.lodo.member_names):
            table = table.append_column(f"lodo_p_{n}", pa.array(ev.lodo.oof_member_probs[:, j]))
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, cache)
    return table


def clip_windows(table: pa.Table, column: str) -> dict[str, list[Window]]:
    """path -> its windows in time order."""
    rows = table.select(["path", "start_s", "end_s", column]).to_pylist()
    out: dict[str, list[Window]] = {}
    for r in rows:
        out.setdefault(r["path"], []).append(Window(r["start_s"], r["end_s"], r[column]))
    return {k: sorted(v, key=lambda w: w.end_s) for k, v in out.items()}


def play(clips: list[list[Window]], t0: float = 0.0) -> tuple[list[Window], list[float]]:
    """Clips back to back from ``t0``: (windows on the stream clock, each clip's start time)."""
    out, starts, t = [], [], t0
    for windows in clips:
        starts.append(t)
        out.extend(Window(w.start_s + t, w.end_s + t, w.p) for w in windows)
        t += max(w.end_s for w in windows)
    return out, starts


# per-camera baseline (measured, not in the live path): None = off, else (margin, history, warm-up windows)
BASELINE: tuple[float, int, int] | None = None


def baselined(stream: list[Window], enter: float) -> list[Window]:
    """The stream's scores against the camera's own recent ones: once ``warm-up`` windows were seen, a window
    counts toward a start only above ``median(last history windows) + margin`` as well as above ``enter``
    (the score is lowered by how far that bar sits above ``enter``); before that, the plain score."""
    if BASELINE is None:
        return stream
    margin, history, warmup = BASELINE
    out, past = [], []
    for w in stream:
        p = w.p
        if len(past) >= warmup:
            p = max(0.0, p - max(0.0, float(np.median(past[-history:])) + margin - enter))
        out.append(Window(w.start_s, w.end_s, p))
        past.append(w.p)
    return out


def alerts(stream: list[Window], cfg: object, camera: str = "replay") -> list[float]:
    """Start times (``at_s``) of the alerts the live confirmation rule raises on ``stream``."""
    from actors.confirmation import Confirmer

    c = Confirmer(camera, cfg)  # type: ignore[arg-type]
    starts = []
    for w in baselined(stream, cfg.enter_threshold):  # type: ignore[attr-defined]
        starts += [e.at_s for e in c.push(w.start_s, w.end_s, w.p) if e.kind == "start"]
    return starts


def sweep(table: pa.Table, column: str, window_s: float, hop_s: float) -> list[dict[str, object]]:
    from nexara.config import ConfirmationSection

    by_clip = clip_windows(table, column)
    meta = {r["path"]: r for r in table.select(["path", "source", "label", "dataset"]).to_pylist()}
    datasets = sorted({m["dataset"] for m in meta.values()})
    ordinary: dict[str, dict[str, list[list[Window]]]] = {d: {} for d in datasets}
    fights: dict[str, list[tuple[str, list[Window]]]] = {d: [] for d in datasets}
    for path in sorted(by_clip):
        m = meta[path]
        if m["label"] == 0:
            ordinary[m["dataset"]].setdefault(m["source"], []).append(by_clip[path])
        else:
            fights[m["dataset"]].append((m["source"], by_clip[path]))
    results = []
    for enter in ENTER_GRID:
        for k, n in KN_GRID:
            cfg = ConfirmationSection(enter_threshold=enter, exit_threshold=max(0.05, enter - 0.2), k=k, n=n)
            row: dict[str, object] = {"enter": enter, "k": k, "n": n}
            for d in datasets:
                minutes, false_alarms = 0.0, 0
                for clips in ordinary[d].values():
                    stream, _ = play(clips)
                    minutes += stream[-1].end_s / 60
                    false_alarms += len(alerts(stream, cfg))
                detected, latencies = 0, []
                pads = sorted(ordinary[d].items(), key=lambda kv: -sum(len(c) for c in kv[1]))
                for i, (source, windows) in enumerate(fights[d]):
                    pad = next(c for s, c in pads[i % len(pads) :] + pads if s != source)
                    before, _ = play(pad)
                    before = [w for w in before if w.end_s <= SPLICE_PREFIX_S] or before
                    onset = max(w.end_s for w in before)
                    fight, _ = play([windows], onset)
                    after, _ = play(pad, max(w.end_s for w in fight))
                    after = [w for w in after if w.end_s <= max(w.end_s for w in fight) + SPLICE_SUFFIX_S]
                    due = onset + window_s + k * hop_s + SLACK_S
                    hits = [t for t in alerts(before + fight + after, cfg) if onset < t <= due]
                    if hits:
                        detected += 1
                        latencies.append(hits[0] - onset)
                row[d] = {
                    "ordinary_min": round(minutes, 1),
                    "false_alarms": false_alarms,
                    "fights": len(fights[d]),
                    "detected": detected,
                    "median_latency_s": round(float(np.median(latencies)), 2) if latencies else None,
                }
            results.append(row)
    return results


def cascade(table: pa.Table, column: str, member: str, threshold: str) -> pa.Table:
    """The scores the live cascade gives: the gate member's probability where it is below the gate."""
    gate = np.asarray(table.column(f"p_{member}").to_pylist())
    thr = float(threshold)
    model = np.asarray(table.column(column).to_pylist())
    gated = gate < thr
    label = np.asarray(table.column("label").to_pylist())
    paths = np.asarray(table.column("path").to_pylist())
    fights = sorted(set(paths[label == 1]))
    all_gated = sum(bool(gated[paths == f].all()) for f in fights)
    print(
        f"cascade {member} < {thr}: gates {gated[label == 0].mean():.1%} of ordinary windows, "
        f"{gated[label == 1].mean():.1%} of fight windows, every window of {all_gated}/{len(fights)} fight clips"
    )
    return table.append_column("p_cascade", pa.array(np.where(gated, gate, model)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "model-v2.yaml")
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "v2" / "features")
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "v2" / "operating_point")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--score", default="p", help="column to replay: p (ensemble) or p_<member>")
    ap.add_argument(
        "--gate",
        metavar="MEMBER:THRESHOLD",
        help="replay the cascade (serve.cascade): windows whose MEMBER probability is below THRESHOLD get that "
        "probability instead of the model's; prints what it gates",
    )
    ap.add_argument(
        "--baseline",
        metavar="MARGIN:HISTORY:WARMUP",
        help="replay with a per-camera baseline: a window must also exceed the median of the camera's last HISTORY "
        "window scores + MARGIN, once WARMUP windows were seen (e.g. 0.4:60:5)",
    )
    args = ap.parse_args()
    if args.baseline:
        global BASELINE
        m, h, w = args.baseline.split(":")
        BASELINE = (float(m), int(h), int(w))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("actors.confirmation").setLevel(logging.WARNING)
    from nexara.config import load_config

    cfg = load_config(args.config)
    table = oof_windows(args)
    if args.gate:
        table = cascade(table, args.score, *args.gate.split(":"))
        args.score = "p_cascade"
    results = sweep(table, args.score, cfg.windows.window_s, cfg.features.window_hop_s)
    datasets = [k for k in results[0] if k not in ("enter", "k", "n")]
    head = "| enter | k of n | " + " | ".join(
        f"{d}: false alarms / ordinary min | {d}: fights detected" for d in datasets
    )
    print(head + " |")
    print("|" + "---|" * (2 + 2 * len(datasets)))
    for r in results:
        cells = []
        for d in datasets:
            x = r[d]
            cells += [f"{x['false_alarms']} / {x['ordinary_min']}", f"{x['detected']}/{x['fights']}"]
        print(f"| {r['enter']} | {r['k']} of {r['n']} | " + " | ".join(cells) + " |")
    quiet = [r for r in results if all(r[d]["false_alarms"] == 0 for d in datasets)]
    if quiet:
        best = max(quiet, key=lambda r: (sum(r[d]["detected"] for d in datasets), -r["k"]))
        print(f"quietest with best recall: enter {best['enter']}, {best['k']} of {best['n']}: " + json.dumps(best))
    else:
        print("no setting in the grid is free of false alarms on the ordinary streams")
    (args.out / "sweep.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
