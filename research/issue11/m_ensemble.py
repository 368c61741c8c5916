"""Steps 2b (members part), 2c, 2d: every member and soft votes, clip level, in six settings:
  sf-CV   surveillance-fight, StratifiedGroupKFold(5) by source, fold seeds 0,1,2
  vp-LODO VioPeru, leave-one-district-out (3 folds)
  pooled  both datasets, StratifiedGroupKFold(5) by source (sf sources + 3 districts), seeds 0,1,2, reported per dataset
  sf->vp  trained on all surveillance-fight, scored on all VioPeru (and vp->sf the reverse)
Members: I3D (whole clip, 32 frames, pooled 1024; --i3d centre|concat) LR (C tuned in inner grouped CV), MLP(64),
ExtraTrees(500); flow statistics (shipped MotionSpec, 1215) LR (C tuned), ExtraTrees(500). Votes: simple averages.
Old model 2026.11.21-2 (motion_lr/mlp/trees, trained on all 230 surveillance-fight clips) scored directly on VioPeru.

Usage: nice -n 19 ../../.venv/bin/python m_ensemble.py [--i3d centre|concat|avg] > results/d_ensemble.md
"""
from __future__ import annotations

import argparse

import numpy as np

import common as c

MEMBERS = ("i3d_lr", "i3d_mlp", "i3d_trees", "flow_lr", "flow_trees")
VOTES = {
    "vote: i3d_lr + flow_lr + flow_trees": ("i3d_lr", "flow_lr", "flow_trees"),
    "vote: i3d_lr + flow_trees": ("i3d_lr", "flow_trees"),
    "vote: i3d_lr + i3d_mlp + flow_lr + flow_trees": ("i3d_lr", "i3d_mlp", "flow_lr", "flow_trees"),
    "vote: all 5 members": MEMBERS,
    "vote: i3d_lr x2 + flow_lr + flow_trees (I3D 50 %)": ("i3d_lr", "i3d_lr", "flow_lr", "flow_trees"),
    "vote: i3d_lr + i3d_trees (I3D only)": ("i3d_lr", "i3d_trees"),
    "vote: i3d_lr + i3d_trees + flow_trees": ("i3d_lr", "i3d_trees", "flow_trees"),
    "vote: i3d_lr + i3d_mlp + i3d_trees + flow_trees": ("i3d_lr", "i3d_mlp", "i3d_trees", "flow_trees"),
}


def fit_predict(name, Xi, Xf, y, g, tr, te):
    X = Xi if name.startswith("i3d") else Xf
    if name.endswith("_lr"):
        C = c.lr_tuned(X[tr], y[tr], g[tr], c.inner_splits)
        m = c.lr_fixed(C)()
    elif name.endswith("_mlp"):
        m = c.mlp()
    else:
        m = c.trees()
    return m.fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]


def run(splits_list, Xi, Xf, y, g):
    """-> list over seeds of {member: oof prob}."""
    out = []
    for splits in splits_list:
        p = {n: np.full(len(y), np.nan) for n in MEMBERS}
        for tr, te in splits:
            for n in MEMBERS:
                p[n][te] = fit_predict(n, Xi, Xf, y, g, tr, te)
        for v, ms in VOTES.items():
            p[v] = np.mean([p[m] for m in ms], axis=0)
        out.append(p)
    return out


def table(title, runs, y, mask=None, extra=None, g=None):
    """g given (VioPeru): one more column, the mean ROC AUC inside each district."""
    mask = np.ones(len(y), bool) if mask is None else mask
    head = "| member | accuracy | ROC AUC |" + (" AUC within district |" if g is not None else "")
    print(f"\n#### {title}\n\n{head}\n|---|---|---|" + ("---|" if g is not None else ""))
    for n in list(MEMBERS) + list(VOTES):
        w = f" {np.mean([c.within_auc(y[mask], r[n][mask], g[mask]) for r in runs]):.3f} |" if g is not None else ""
        print(f"| {n} | {c.fmt([c.metrics(y[mask], r[n][mask]) for r in runs])} |{w}")
    for k, v in (extra or {}).items():
        print(f"| {k} | {v} |")


def old_model_vp(Xf_vp):
    from nexara.predict import DEFAULT_MODEL_DIR
    from nexara.voting import EnsembleModel

    m = EnsembleModel(DEFAULT_MODEL_DIR)
    out = m.predict(np.zeros((len(Xf_vp), 1, m.manifest.feature_dim), np.float32), Xf_vp)
    return out.probability, out.violent, m.manifest.threshold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--i3d", default="centre", choices=["centre", "concat", "avg"])
    ap.add_argument("--settings", default="sf,vp,pooled,cross")
    a = ap.parse_args()
    cls = {d: c.load_clips(d) for d in ("sf", "vp")}

    def i3d(cl):
        xc = c.whole(cl, "pooled")
        if a.i3d == "centre":
            return xc
        xm = c.whole(cl, "mpooled")
        return np.hstack([xc, xm]) if a.i3d == "concat" else (xc + xm) / 2

    Xi = {d: i3d(cl) for d, cl in cls.items()}
    Xf = {d: c.flow_whole(cl) for d, cl in cls.items()}
    print(f"I3D input: whole clip, {a.i3d}; accuracy at p >= 0.5; ± = std over fold seeds")
    p_old, v_old, thr_old = old_model_vp(Xf["vp"])
    yv = cls["vp"].y
    from sklearn.metrics import accuracy_score, roc_auc_score
    old_vp = f"{accuracy_score(yv, v_old):.3f} | {roc_auc_score(yv, p_old):.3f} | {c.within_auc(yv, p_old, cls['vp'].source):.3f}"
    old_sf = "0.809 ± 0.085 | 0.893 ± 0.070 (its own CV report, nexara/models/default/cv/report.md)"
    np.save(c.FEATS / "old_model_vp.npy", p_old)
    sets = a.settings.split(",")
    for d, seeds in (("sf", (0, 1, 2)), ("vp", (0,))):
        if d not in sets:
            continue
        cl = cls[d]
        runs = run([c.outer_splits(cl.y, cl.source, s) for s in seeds], Xi[d], Xf[d], cl.y, cl.source)
        np.save(c.FEATS / f"oof_ens_{d}_{a.i3d}.npy", runs, allow_pickle=True)
        extra = {f"old model 2026.11.21-2 (trained on all surveillance-fight; threshold {thr_old})": old_vp} if d == "vp" else {"old model 2026.11.21-2": old_sf}
        table(f"{d}: {'grouped 5-fold CV by source, 3 seeds' if d == 'sf' else 'leave-one-district-out'}", runs, cl.y,
              extra=extra, g=cl.source if d == "vp" else None)
        if d == "vp":
            hn = cl.hard | (cl.y == 1)
            table("vp-LODO restricted to fights + hard negatives", runs, cl.y, hn, g=cl.source)
    if "pooled" in sets:
        y = np.concatenate([cls["sf"].y, cls["vp"].y])
        g = np.concatenate([cls["sf"].source, cls["vp"].source])
        X1 = np.vstack([Xi["sf"], Xi["vp"]]); X2 = np.vstack([Xf["sf"], Xf["vp"]])
        runs = run([c.outer_splits(y, g, s) for s in (0, 1, 2)], X1, X2, y, g)
        np.save(c.FEATS / f"oof_ens_pooled_{a.i3d}.npy", runs, allow_pickle=True)
        n = len(cls["sf"].y)
        table("pooled training (both datasets, groups = sources), scored on surveillance-fight", runs, y, np.arange(len(y)) < n)
        table("pooled training, scored on VioPeru", runs, y, np.arange(len(y)) >= n,
              extra={"old model 2026.11.21-2 (never saw VioPeru)": old_vp}, g=g)
    if "cross" in sets:
        for src, dst in (("sf", "vp"), ("vp", "sf")):
            y = np.concatenate([cls[src].y, cls[dst].y])
            g = np.concatenate([cls[src].source, cls[dst].source])
            n = len(cls[src].y)
            X1 = np.vstack([Xi[src], Xi[dst]]); X2 = np.vstack([Xf[src], Xf[dst]])
            runs = run([[(np.arange(n), np.arange(n, len(y)))]], X1, X2, y, g)
            np.save(c.FEATS / f"oof_ens_{src}2{dst}_{a.i3d}.npy", runs, allow_pickle=True)
            table(f"trained on all {src}, scored on all {dst}", runs, y, np.arange(len(y)) >= n,
                  extra={"old model 2026.11.21-2": old_vp} if dst == "vp" else None, g=g if dst == "vp" else None)


if __name__ == "__main__":
    main()
