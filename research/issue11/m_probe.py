"""Step 2a: LR probe on I3D pooled features, per dataset, grouped CV (surveillance-fight: StratifiedGroupKFold(5)
by source, fold seeds 0,1,2; VioPeru: leave-one-district-out, 3 folds, deterministic).

Usage: nice -n 19 ../../.venv/bin/python m_probe.py [--windows] > results/a_probe.md
"""
from __future__ import annotations

import sys

import numpy as np

import common as c

SEEDS = {"sf": (0, 1, 2), "vp": (0,)}
USE_WINDOWS = "--windows" in sys.argv


WITHIN: list[float] = []


def row(name, vals):
    extra = f" | {np.mean(WITHIN):.3f}" if WITHIN else ""
    WITHIN.clear()
    print(f"| {name} | {c.fmt(vals)}{extra} |", flush=True)


def main() -> None:
    dss = [a.split("=")[1] for a in sys.argv if a.startswith("--ds=")] or ["sf,vp"]
    for ds in dss[0].split(","):
        cl = c.load_clips(ds)
        y, g = cl.y, cl.source
        print(f"\n### {ds}: {len(y)} clips ({y.sum()} fight), {'LOGO over 3 districts' if ds == 'vp' else 'StratifiedGroupKFold(5) by source, seeds 0,1,2'}\n")
        if ds == "vp":
            print("| features / probe | accuracy | ROC AUC (pooled OOF) | ROC AUC within district (mean of 3) |\n|---|---|---|---|")
        else:
            print("| features / probe | accuracy | ROC AUC |\n|---|---|---|")
        Xc, Xm = c.whole(cl, "pooled"), c.whole(cl, "mpooled")
        variants = {"whole clip, centre crop": Xc, "whole clip, motion crop": Xm,
                    "whole clip, centre ++ motion (concat)": np.hstack([Xc, Xm]),
                    "whole clip, (centre + motion)/2": (Xc + Xm) / 2,
                    "whole clip, logits 400 (centre)": c.whole(cl, "logits")}
        for name, X in variants.items():
            for probe in (["lr_tuned", "fixed C=0.01"] if name.startswith("whole clip, centre crop") else ["lr_tuned"]):
                vals = []
                for s in SEEDS[ds]:
                    sp = c.outer_splits(y, g, s)
                    p = c.oof("lr_tuned" if probe == "lr_tuned" else c.lr_fixed(0.01), X, y, g, sp)
                    vals.append(c.metrics(y, p))
                    if ds == "vp":
                        WITHIN.append(c.within_auc(y, p, g))
                row(f"{name}, LR {'(C tuned in inner grouped CV)' if probe == 'lr_tuned' else probe}", vals)
        if not USE_WINDOWS:
            continue
        Xw, ci, _ = c.windows(cl)
        keep = np.unique(ci)  # the windows phase may have covered a (shuffled) subset of the clips
        if len(keep) < len(y):
            print(f"\nwindow rows: {len(keep)} of {len(y)} clips have window features; whole-clip rows above use all")
            ci = np.searchsorted(keep, ci)
            y, g = y[keep], g[keep]
            row("same clips only: whole clip, centre crop, LR (C tuned inner)",
                [c.metrics(y, c.oof("lr_tuned", Xc[keep], y, g, c.outer_splits(y, g, s))) for s in SEEDS[ds]])
        yw, gw = y[ci], g[ci]
        Xmean = np.stack([Xw[ci == i].mean(0) for i in range(len(y))])
        res = {"windows, LR on windows, clip = mean of window probs": [],
               "windows, LR on windows, clip = max of window probs": [],
               "windows, LR on mean-pooled window features": [],
               "windows, window-level (each window its clip's label)": []}
        within: dict[str, list[float]] = {}
        for s in SEEDS[ds]:
            sp = c.outer_splits(y, g, s)
            wsp = c.window_splits(sp, ci)
            pw = np.full(len(yw), np.nan)
            for (tr, te), (wtr, wte) in zip(sp, wsp):
                C = c.lr_tuned(Xw[wtr], yw[wtr], gw[wtr], c.inner_splits)
                pw[wte] = c.lr_fixed(C)().fit(Xw[wtr], yw[wtr]).predict_proba(Xw[wte])[:, 1]
            pm = c.oof("lr_tuned", Xmean, y, g, sp)
            for key, yy, pp, gg in (
                ("windows, LR on windows, clip = mean of window probs", y, c.agg(pw, ci, len(y), "mean"), g),
                ("windows, LR on windows, clip = max of window probs", y, c.agg(pw, ci, len(y), "max"), g),
                ("windows, window-level (each window its clip's label)", yw, pw, gw),
                ("windows, LR on mean-pooled window features", y, pm, g),
            ):
                res[key].append(c.metrics(yy, pp))
                if ds == "vp":
                    within.setdefault(key, []).append(c.within_auc(yy, pp, gg))
            np.save(c.FEATS / f"oof_window_lr_{ds}_s{s}.npy", pw)
        for k, v in res.items():
            WITHIN.extend(within.get(k, []))
            row(k + " (C tuned inner)", v)
        print(f"\n{len(yw)} windows ({len(yw)/len(y):.1f} per clip)")


if __name__ == "__main__":
    main()
