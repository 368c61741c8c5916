"""Steps 2a (window part of the ensemble) and 2e: window-level members trained on 2-s windows (each window takes its
clip's label), pooled over both datasets, StratifiedGroupKFold(5) by source (sf sources + 3 districts) at clip level
(a clip's windows stay in one fold), fold seed 0. Out-of-fold window scores -> clip level (max / mean over windows)
and the window-score distribution on no-fight and hard-negative clips vs fight-clip recall at thresholds.

Usage: nice -n 19 ../../.venv/bin/python m_windows.py > results/e_windows.md
"""
from __future__ import annotations

import numpy as np

import common as c

THRS = (0.5, 0.6, 0.7, 0.8, 0.9)
MEMBERS = ("i3d_lr", "i3d_trees", "flow_lr", "flow_trees")
VOTES = {"vote: i3d_lr + flow_lr + flow_trees": ("i3d_lr", "flow_lr", "flow_trees"),
         "vote: i3d_lr + i3d_trees": ("i3d_lr", "i3d_trees"),
         "vote: i3d_lr + i3d_trees + flow_trees": ("i3d_lr", "i3d_trees", "flow_trees"),
         "vote: all 4": MEMBERS}


def load(ds):
    cl = c.load_clips(ds)
    Xi, ci, st = c.windows(cl, "i3d")
    Xf, cf, sf = c.windows(cl, "flow", "motion")
    # align flow windows to I3D windows by (clip, nearest start)
    idx = np.empty(len(ci), int)
    for k in range(len(ci)):
        cand = np.flatnonzero(cf == ci[k])
        idx[k] = cand[np.abs(sf[cand] - st[k]).argmin()]
    return cl, Xi, Xf[idx], ci, st


def main() -> None:
    parts = [load(d) for d in ("sf", "vp")]
    off = 0
    y_clip, g_clip, ds_clip, hard_clip, Xi, Xf, ci = [], [], [], [], [], [], []
    for d, (cl, xi, xf, cidx, _) in zip(("sf", "vp"), parts):
        y_clip.append(cl.y); g_clip.append(cl.source); ds_clip.append(np.full(len(cl.y), d)); hard_clip.append(cl.hard)
        Xi.append(xi); Xf.append(xf); ci.append(cidx + off); off += len(cl.y)
    y, g, dsn, hard = map(np.concatenate, (y_clip, g_clip, ds_clip, hard_clip))
    Xi, Xf, ci = np.vstack(Xi), np.vstack(Xf), np.concatenate(ci)
    yw, gw = y[ci], g[ci]
    have = np.isin(np.arange(len(y)), ci)  # the windows phase may cover a (shuffled) subset of the clips
    print(f"clips with window features: sf {have[dsn == 'sf'].sum()}/{(dsn == 'sf').sum()}, vp {have[dsn == 'vp'].sum()}/{(dsn == 'vp').sum()}")
    sp = c.outer_splits(y, g, 0)
    wsp = c.window_splits(sp, ci)
    p = {n: np.full(len(yw), np.nan) for n in MEMBERS}
    for wtr, wte in wsp:
        for n in MEMBERS:
            X = Xi if n.startswith("i3d") else Xf
            if n.endswith("_lr"):
                C = c.lr_tuned(X[wtr], yw[wtr], gw[wtr], c.inner_splits)
                m = c.lr_fixed(C)()
            else:
                m = c.trees()
            p[n][wte] = m.fit(X[wtr], yw[wtr]).predict_proba(X[wte])[:, 1]
    for v, ms in VOTES.items():
        p[v] = np.mean([p[m] for m in ms], axis=0)
    np.savez(c.FEATS / "oof_windows_pooled.npz", ci=ci, y=y, ds=dsn, hard=hard, **{k.replace(" ", "_"): v for k, v in p.items()})
    print(f"{len(yw)} windows of {len(y)} clips; pooled grouped 5-fold CV (seed 0), window members trained on windows\n")
    for d in ("sf", "vp"):
        m = (dsn == d) & have
        print(f"\n#### {d}: clip level from window scores (accuracy at 0.5 | ROC AUC)\n")
        print("| member | clip = max: acc | AUC | clip = mean: acc | AUC | window-level AUC |\n|---|---|---|---|---|---|")
        for n in p:
            mx, mn = c.agg(p[n], ci, len(y), "max"), c.agg(p[n], ci, len(y), "mean")
            wm = m[ci]
            a1, u1 = c.metrics(y[m], mx[m]); a2, u2 = c.metrics(y[m], mn[m])
            print(f"| {n} | {a1:.3f} | {u1:.3f} | {a2:.3f} | {u2:.3f} | {c.metrics(yw[wm], p[n][wm])[1]:.3f} |")
    for n in ("vote: i3d_lr + i3d_trees + flow_trees", "vote: i3d_lr + i3d_trees", "i3d_lr"):
        print(f"\n#### window-score distribution, {n} (out of fold)\n")
        print("| threshold | no-fight windows >= thr (sf) | (vp ordinary) | (vp hard-neg) | no-fight clips with any window >= thr (all) | fight-clip recall, max window >= thr (sf) | (vp) |")
        print("|---|---|---|---|---|---|---|")
        mx = c.agg(p[n], ci, len(y), "max")
        for t in THRS:
            def frac(mask_clip):
                w = mask_clip[ci]
                return f"{(p[n][w] >= t).mean():.3f} ({(p[n][w] >= t).sum()}/{w.sum()})"
            nf = (y == 0) & have
            print(f"| {t} | {frac(nf & (dsn == 'sf'))} | {frac(nf & (dsn == 'vp') & ~hard)} | {frac(nf & hard)} | "
                  f"{(mx[nf] >= t).mean():.3f} | {(mx[(y == 1) & have & (dsn == 'sf')] >= t).mean():.3f} | {(mx[(y == 1) & have & (dsn == 'vp')] >= t).mean():.3f} |")
        nfw = (y == 0)[ci]
        print(f"\nno-fight window score quantiles p50/p90/p99/max: " + " / ".join(f"{q:.2f}" for q in np.quantile(p[n][nfw], [0.5, 0.9, 0.99, 1.0])))


if __name__ == "__main__":
    main()
