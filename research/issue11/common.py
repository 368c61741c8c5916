"""Shared loaders, members and grouped CV for the issue-11 measurements (scripts m_*.py)."""
from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
import os

import numpy as np
import torch
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

torch.set_num_threads(2)
warnings.filterwarnings("ignore", category=ConvergenceWarning)
HERE = Path(__file__).parent
FEATS = HERE / "feats"
SHARED = Path(os.environ.get("NEXARA_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data"
DATA = {"sf": SHARED / "surveillance-fight", "vp": SHARED / "vioperu"}
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@dataclass
class Clips:
    ds: str
    clip: np.ndarray
    y: np.ndarray
    source: np.ndarray
    hard: np.ndarray


def load_clips(ds: str) -> Clips:
    rows = list(csv.DictReader(open(DATA[ds] / "clips.csv")))
    return Clips(ds, np.array([r["clip"] for r in rows]), np.array([r["label"] == "fight" for r in rows], int),
                 np.array([r["source"] for r in rows]),
                 np.array([r.get("hard_negative", "false") == "true" for r in rows]))


def _align(clips: Clips, names: np.ndarray, arr: np.ndarray) -> np.ndarray:
    pos = {n: i for i, n in enumerate(names)}
    return arr[[pos[c] for c in clips.clip]].astype(np.float32)


def whole(clips: Clips, key: str = "pooled") -> np.ndarray:
    d = np.load(FEATS / f"whole_{clips.ds}.npz")
    return _align(clips, d["clip"], d[key])


def flow_whole(clips: Clips) -> np.ndarray:
    d = np.load(FEATS / f"flow_whole_{clips.ds}.npz")
    return _align(clips, d["clip"], d["motion"])


def windows(clips: Clips, kind: str = "i3d", key: str = "pooled") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X windows, clip index per window, start_s) in clips order."""
    d = np.load(FEATS / (f"windows_{clips.ds}.npz" if kind == "i3d" else f"flow_windows_{clips.ds}.npz"))
    pos = {n: i for i, n in enumerate(clips.clip)}
    ci = np.array([pos[c] for c in d["clip"]])
    order = np.lexsort((d["start_s"], ci))
    return d[key][order].astype(np.float32), ci[order], d["start_s"][order]


# --- members ----------------------------------------------------------------------------------------
def lr_fixed(C: float = 0.01):
    return lambda: make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))


def lr_tuned(X, y, g, inner_splits) -> float:
    """C by inner grouped CV on the training part (mean inner ROC AUC; ties -> smaller C)."""
    best, best_c = -1.0, C_GRID[0]
    for C in C_GRID:
        ps, ys = [], []
        for tr, te in inner_splits(X, y, g):
            m = lr_fixed(C)().fit(X[tr], y[tr])
            ps.append(m.predict_proba(X[te])[:, 1]); ys.append(y[te])
        s = roc_auc_score(np.concatenate(ys), np.concatenate(ps))
        if s > best + 1e-4:
            best, best_c = s, C
    return best_c


def mlp():
    return make_pipeline(StandardScaler(), MLPClassifier((64,), alpha=1.0, max_iter=500, random_state=0))


def trees():
    return ExtraTreesClassifier(500, max_features="sqrt", min_samples_leaf=2, n_jobs=1, random_state=0)


# --- splits -----------------------------------------------------------------------------------------
def outer_splits(y, g, seed: int, n: int = 5):
    if len(np.unique(g)) <= 3:
        return list(LeaveOneGroupOut().split(y, y, g))
    return list(StratifiedGroupKFold(n, shuffle=True, random_state=seed).split(y, y, g))


def inner_splits(X, y, g):
    if len(np.unique(g)) <= 3:
        return LeaveOneGroupOut().split(X, y, g)
    return StratifiedGroupKFold(3, shuffle=True, random_state=123).split(X, y, g)


def oof(make: Callable | str, X, y, g, splits, Xs_extra=None) -> np.ndarray:
    """Out-of-fold probabilities. make: a factory, or 'lr_tuned' (C chosen inside each training fold)."""
    p = np.full(len(y), np.nan)
    for tr, te in splits:
        if make == "lr_tuned":
            C = lr_tuned(X[tr], y[tr], g[tr], inner_splits)
            m = lr_fixed(C)().fit(X[tr], y[tr])
        else:
            m = make().fit(X[tr], y[tr])
        p[te] = m.predict_proba(X[te])[:, 1]
    return p


def window_splits(clip_splits, ci):
    """clip-level folds -> window-level folds (a clip's windows stay together)."""
    out = []
    for tr, te in clip_splits:
        out.append((np.flatnonzero(np.isin(ci, tr)), np.flatnonzero(np.isin(ci, te))))
    return out


def agg(pw: np.ndarray, ci: np.ndarray, n: int, how: str) -> np.ndarray:
    out = np.full(n, np.nan)
    for i in range(n):
        v = pw[ci == i]
        if len(v):
            out[i] = v.max() if how == "max" else v.mean()
    return out


def metrics(y, p, thr: float = 0.5) -> tuple[float, float]:
    return accuracy_score(y, p >= thr), roc_auc_score(y, p)


def fmt(vals: list[tuple[float, float]]) -> str:
    a = np.array(vals)
    if len(a) == 1:
        return f"{a[0,0]:.3f} | {a[0,1]:.3f}"
    return f"{a[:,0].mean():.3f} ± {a[:,0].std():.3f} | {a[:,1].mean():.3f} ± {a[:,1].std():.3f}"


def within_auc(y, p, g) -> float:
    """Mean ROC AUC inside each source (district) that has both classes: the ranking quality a held-out district
    sees, without the score-level shift between folds that the pooled OOF AUC also charges for."""
    vals = [roc_auc_score(y[g == s], p[g == s]) for s in np.unique(g) if len(np.unique(y[g == s])) == 2]
    return float(np.mean(vals))
