"""Step 2b: cross-dataset transfer of the I3D probe. Train on all of one dataset (LR, C tuned by grouped CV inside
the training dataset: surveillance-fight StratifiedGroupKFold(3) by source, VioPeru leave-one-district-out; and
fixed C=0.01), score all clips of the other. Variants: where the model looks (centre crop, motion crop, both),
window features, logits.

Usage: nice -n 19 ../../.venv/bin/python m_cross.py [--windows] > results/b_cross.md
"""
from __future__ import annotations

import sys

import numpy as np

import common as c


def fit_score(Xtr, ytr, gtr, Xte, C=None):
    C = C or c.lr_tuned(Xtr, ytr, gtr, c.inner_splits)
    return c.lr_fixed(C)().fit(Xtr, ytr).predict_proba(Xte)[:, 1], C


def main() -> None:
    cls = {d: c.load_clips(d) for d in ("sf", "vp")}
    feats = {}
    for d, cl in cls.items():
        xc, xm = c.whole(cl, "pooled"), c.whole(cl, "mpooled")
        feats[d] = {"centre crop": xc, "motion crop": xm, "centre ++ motion (concat)": np.hstack([xc, xm]),
                    "(centre + motion)/2": (xc + xm) / 2, "logits 400 (centre)": c.whole(cl, "logits"),
                    "centre ++ logits": np.hstack([xc, c.whole(cl, "logits")])}
    for src, dst in (("sf", "vp"), ("vp", "sf")):
        a, b = cls[src], cls[dst]
        print(f"\n#### trained on all {src} ({len(a.y)} clips), scored on all {dst} ({len(b.y)} clips)\n")
        print("| I3D features (whole clip, 32 frames) | C | accuracy | ROC AUC | AUC fights vs hard negatives |\n|---|---|---|---|---|")
        for name in feats[src]:
            for fixed in (None, 0.01):
                p, C = fit_score(feats[src][name], a.y, a.source, feats[dst][name], fixed)
                acc, auc = c.metrics(b.y, p)
                hn = (b.y == 1) | b.hard
                hn_auc = c.metrics(b.y[hn], p[hn])[1] if b.hard.any() else float("nan")
                print(f"| {name} | {C:g}{' (tuned)' if fixed is None else ''} | {acc:.3f} | {auc:.3f} | {hn_auc:.3f} |")
        # test-time augmentation: train on centre crop, score the mean of centre and motion-crop probabilities
        pc, C = fit_score(feats[src]["centre crop"], a.y, a.source, feats[dst]["centre crop"])
        m = c.lr_fixed(C)().fit(feats[src]["centre crop"], a.y)
        pt = (m.predict_proba(feats[dst]["centre crop"])[:, 1] + m.predict_proba(feats[dst]["motion crop"])[:, 1]) / 2
        acc, auc = c.metrics(b.y, pt)
        print(f"| TTA: trained on centre, scored mean(p centre, p motion crop) | {C:g} | {acc:.3f} | {auc:.3f} | |")
        if "--windows" in sys.argv:
            Xa, ca, _ = c.windows(a); Xb, cb, _ = c.windows(b)
            C = c.lr_tuned(Xa, a.y[ca], a.source[ca], c.inner_splits)
            pw = c.lr_fixed(C)().fit(Xa, a.y[ca]).predict_proba(Xb)[:, 1]
            hb = np.isin(np.arange(len(b.y)), cb)  # clips with window features (sf: a shuffled subset)
            for how in ("max", "mean"):
                acc, auc = c.metrics(b.y[hb], c.agg(pw, cb, len(b.y), how)[hb])
                print(f"| 2-s windows (centre), LR on windows, clip = {how} | {C:g} (tuned) | {acc:.3f} | {auc:.3f} | |")
            ka, kb = np.unique(ca), np.unique(cb)
            Xma = np.stack([Xa[ca == i].mean(0) for i in ka])
            Xmb = np.stack([Xb[cb == i].mean(0) for i in kb])
            p, C = fit_score(Xma, a.y[ka], a.source[ka], Xmb)
            acc, auc = c.metrics(b.y[kb], p)
            print(f"| (windows: trained on {len(ka)} {src} clips with windows, scored on {len(kb)} {dst} clips; whole-clip rows above use all) | | | | |")
            print(f"| 2-s windows (centre), mean-pooled window features | {C:g} (tuned) | {acc:.3f} | {auc:.3f} | |")


if __name__ == "__main__":
    main()
