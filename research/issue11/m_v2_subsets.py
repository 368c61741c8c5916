"""Which members to ship: every subset of the members cross-validated in one run, as a plain average of
their out-of-fold window probabilities (the shipped ensemble fits weights and a temperature on inner folds;
a plain average is the cheap proxy used to choose, the chosen set is then cross-validated properly).

Reads the cache ``benchmarks/bench_operating_point.py`` writes (``OUT/oof_windows.parquet``: one row per
window, ``p_<member>`` out of fold in grouped CV, ``lodo_p_<member>`` leave one dataset out). Prints, per
subset, clip-level ROC AUC (max over windows) per dataset in grouped CV and leave-one-dataset-out, and for
the best subsets the live replay (quiet operating point: the most fights alerted with 0 false alarms).

    .venv/bin/python research/issue11/m_v2_subsets.py runs/v2/exp/all/oof_windows.parquet [--replay 8]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def clip_auc(t: dict[str, np.ndarray], p: np.ndarray, mask: np.ndarray) -> float:
    paths = t["path"][mask]
    uniq, inv = np.unique(paths, return_inverse=True)
    mx = np.full(len(uniq), -np.inf)
    np.maximum.at(mx, inv, p[mask])
    y = np.zeros(len(uniq))
    y[inv] = t["label"][mask]
    return float(roc_auc_score(y, mx))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("table", type=Path)
    ap.add_argument("--replay", type=int, default=8, help="replay the live rule for this many best subsets")
    ap.add_argument("--max-size", type=int, default=4)
    args = ap.parse_args()
    table = pq.read_table(args.table)
    t = {c: np.asarray(table.column(c).to_pylist()) for c in table.column_names}
    members = [c[2:] for c in table.column_names if c.startswith("p_")]
    ds = t["dataset"]
    names = sorted(set(ds))
    rows = []
    for size in range(1, args.max_size + 1):
        for subset in itertools.combinations(members, size):
            p = np.mean([t[f"p_{m}"] for m in subset], axis=0)
            row = {"subset": " + ".join(subset), "cv": {d: clip_auc(t, p, ds == d) for d in names}}
            if f"lodo_p_{subset[0]}" in t:
                lp = np.mean([t[f"lodo_p_{m}"] for m in subset], axis=0)
                row["lodo"] = {d: clip_auc(t, lp, ds == d) for d in names}
            row["p"] = p
            rows.append(row)
    rows.sort(key=lambda r: -np.mean(list(r["cv"].values())))
    head = " | ".join(f"{d} CV" for d in names) + " | " + " | ".join(f"{d} held out (LODO)" for d in names)
    print(f"| subset (plain average) | {head} | mean CV |")
    print("|---" * (2 + 2 * len(names)) + "|")
    for r in rows[:40]:
        cells = [f"{r['cv'][d]:.3f}" for d in names] + [f"{r.get('lodo', {}).get(d, float('nan')):.3f}" for d in names]
        print(f"| {r['subset']} | " + " | ".join(cells) + f" | {np.mean(list(r['cv'].values())):.3f} |")
    if args.replay:
        import bench_operating_point as bop

        print("\n| subset | quiet setting (0 false alarms) | fights alerted | ordinary min |")
        print("|---|---|---|---|")
        for r in rows[: args.replay]:
            tab = table.append_column("p_vote", pa.array(r["p"]))
            res = bop.sweep(tab, "p_vote", 2.0, 1.0)
            quiet = [x for x in res if all(x[d]["false_alarms"] == 0 for d in names)]
            if not quiet:
                print(f"| {r['subset']} | none | - | - |")
                continue
            b = max(quiet, key=lambda x: (sum(x[d]["detected"] for d in names), -x["k"]))
            det = sum(b[d]["detected"] for d in names)
            tot = sum(b[d]["fights"] for d in names)
            mins = sum(b[d]["ordinary_min"] for d in names)
            print(f"| {r['subset']} | {b['enter']}, {b['k']} of {b['n']} | {det}/{tot} | {mins:.1f} |")


if __name__ == "__main__":
    main()
