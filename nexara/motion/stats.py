"""Per-pair statistics of pooled optical flow and their clip-level summaries (pure numpy): the flow-v1
flow and frame-difference features, the flow-v2 extras, Violent Flows and the local cell statistics."""

from __future__ import annotations

import numpy as np

from nexara.motion.spec import (
    _ACC_BINS,
    _DIFF_SERIES,
    _DIR_BINS,
    _EXTRA_SERIES,
    _FLOW_HISTS,
    _FLOW_SERIES,
    _GRID,
    _LOCAL_CONC,
    _LOCAL_SERIES,
    _MAG_BINS,
    _MIN_DANG_PX,
    _MIN_MOVING,
    _MOVING_PX,
    _REF_DT_S,
    _TOP_Q,
    _VIF_BINS,
    _VIF_MOVING,
    _VIF_TOP,
)


def _series_stats(series: np.ndarray) -> np.ndarray:
    """mean, std, max, p90, p10, mean |step|, max |step| of a 1-D series (steps 0 if length 1)."""
    s = np.asarray(series, dtype=np.float64)
    if s.size == 0:
        s = np.zeros(1)
    steps = np.abs(np.diff(s)) if s.size > 1 else np.zeros(1)
    p90, p10 = np.percentile(s, [90, 10])
    return np.array([s.mean(), s.std(), s.max(), p90, p10, steps.mean(), steps.max()])


def _histograms(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-row histograms of ``values`` (T, ...) -> (T, bins) counts, with ``np.histogram``'s bins:
    ``[e_j, e_j+1)``, the last one closed. Counting ``>=`` per edge beats searchsorted for few edges."""
    flat = values.reshape(values.shape[0], -1)
    at_least = np.stack([(flat >= e).sum(axis=1) for e in edges[:-1]], axis=1)
    above = np.concatenate([at_least[:, 1:], (flat > edges[-1]).sum(axis=1)[:, None]], axis=1)
    return (at_least - above).astype(np.float64)


def _direction_histograms(u: np.ndarray, v: np.ndarray, weight: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Per-row (T, 8) histograms of the flow angle of the moving pixels, weighted by magnitude
    (``np.histogram(angle, 8, (-pi, pi), weights=...)``, computed on the moving pixels only)."""
    t = moving.shape[0]
    rows = np.nonzero(moving)[0]
    angle = np.arctan2(v[moving], u[moving])
    edges = np.linspace(-np.pi, np.pi, _DIR_BINS + 1)
    idx = np.clip(np.searchsorted(edges, angle, side="right") - 1, 0, _DIR_BINS - 1)
    counts = np.bincount(rows * _DIR_BINS + idx, weights=weight[moving], minlength=t * _DIR_BINS)
    return counts.reshape(t, _DIR_BINS)


def _cells(x: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, 16) means of a 4x4 grid of cells."""
    t, h, w = x.shape
    return x.reshape(t, _GRID, h // _GRID, _GRID, w // _GRID).mean(axis=(2, 4), dtype=np.float64).reshape(t, -1)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p + 1e-9)).sum(axis=1)


def _cell_rows(x: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, 16, H*W/16) pixels of each cell of the 4x4 grid (a contiguous copy)."""
    t, h, w = x.shape
    rows = x.reshape(t, _GRID, h // _GRID, _GRID, w // _GRID).swapaxes(2, 3)
    return np.ascontiguousarray(rows).reshape(t, _GRID * _GRID, -1)


def _cell_index(h: int, w: int) -> np.ndarray:
    """(H, W) index of the 4x4 grid cell of each pixel (row-major cells)."""
    rows = np.arange(h) // (h // _GRID)
    cols = np.arange(w) // (w // _GRID)
    return rows[:, None] * _GRID + cols[None, :]


def _abs_angle_change(a1: np.ndarray, a0: np.ndarray) -> np.ndarray:
    """|a1 - a0| wrapped to [0, pi] (``|np.angle(np.exp(1j * (a1 - a0)))|`` without complex numbers)."""
    d = (a1 - a0 + np.pi) % (2 * np.pi) - np.pi
    return np.abs(d)


def _pair_stats(
    flow: np.ndarray, raw: np.ndarray, prev: dict[str, np.ndarray] | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-pair series and histograms of a chunk of flows (T, H, W, 2). ``flow`` is compensated and
    per 0.1 s, ``raw`` the same flow before both (for ViF). ``prev`` carries the last pair of the
    previous chunk (for the changes between pairs), None at the start of the clip. Returns the
    statistics and the ``prev`` of the next chunk.

    Keys of the changes between consecutive pairs (``acc_*``, ``ha``, ``top_acc``, ``acc_ratio``,
    ``dang``, ``l_acc_*``, ``l_dang``, ``vif_*``) have one row per pair that has a predecessor."""
    t, h, w, _ = flow.shape
    u, v = flow[..., 0], flow[..., 1]
    mag = np.sqrt(u * u + v * v)
    flat = mag.reshape(t, -1)
    out: dict[str, np.ndarray] = {"mean": flat.mean(axis=1, dtype=np.float64)}
    out["p50"], out["p90"], out["p99"] = np.percentile(flat, [50, 90, 99], axis=1)
    for th in (1, 2, 4):
        out[f"fr{th}"] = (flat > th).mean(axis=1)
    out["hm"] = _histograms(mag, _MAG_BINS) / flat.shape[1]

    moving = mag > _MOVING_PX
    weight = mag * moving
    h8 = _direction_histograms(u, v, weight, moving)
    h8n = h8 / (h8.sum(axis=1, keepdims=True) + 1e-6)
    out["hd"] = -np.sort(-h8n, axis=1)  # rotation-invariant: largest bin first
    out["dir_ent"] = _entropy(h8n)

    n_moving = moving.sum(axis=(1, 2))
    mean_vec = (flow * moving[..., None]).sum(axis=(1, 2), dtype=np.float64) / np.maximum(n_moving, 1)[:, None]
    mean_norm = weight.sum(axis=(1, 2), dtype=np.float64) / np.maximum(n_moving, 1)
    out["coh"] = np.where(n_moving > _MIN_MOVING, np.linalg.norm(mean_vec, axis=1) / (mean_norm + 1e-6), 0.0)

    du_dx, du_dy = np.gradient(u, axis=2), np.gradient(u, axis=1)
    dv_dx, dv_dy = np.gradient(v, axis=2), np.gradient(v, axis=1)
    div = np.abs(du_dx + dv_dy)
    curl = np.abs(dv_dx - du_dy)
    out["div"] = div.mean(axis=(1, 2), dtype=np.float64)
    out["curl"] = curl.mean(axis=(1, 2), dtype=np.float64)

    cells = _cells(mag)
    out["cellmax"] = cells.max(axis=1)
    out["cellratio"] = cells.max(axis=1) / (cells.mean(axis=1) + 1e-3)
    out["cellent"] = _entropy(cells / (cells.sum(axis=1, keepdims=True) + 1e-6))

    # extras: the top 5% moving pixels of each pair
    top = flat >= np.percentile(flat, _TOP_Q, axis=1)[:, None]
    n_top = np.maximum(top.sum(axis=1), 1)
    top_mag = (flat * top).sum(axis=1, dtype=np.float64) / n_top
    out["top_mag"] = top_mag
    ang = np.arctan2(v, u)

    # local: per-cell series (T, 16)
    n_cells = _GRID * _GRID
    out["l_mag_mean"] = cells
    out["l_mag_p90"] = np.percentile(_cell_rows(mag), 90, axis=2)
    out["l_fr2"] = _cells(mag > 2)
    out["l_div"] = _cells(div)
    out["l_curl"] = _cells(curl)
    out["l_coh"] = np.hypot(_cells(u), _cells(v)) / (cells + 1e-3)
    b8 = ((ang + np.float32(np.pi)) / np.float32(2 * np.pi) * 8).astype(np.intp).clip(0, 7)
    idx = (np.arange(t)[:, None, None] * n_cells + _cell_index(h, w)[None]) * 8 + b8
    hist = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=t * n_cells * 8).reshape(t, n_cells, 8)
    hist = hist / (hist.sum(axis=2, keepdims=True) + 1e-6)
    out["l_dir_ent"] = -(hist * np.log(hist + 1e-9)).sum(axis=2)

    # changes between consecutive pairs
    raw_mag = np.sqrt(raw[..., 0] ** 2 + raw[..., 1] ** 2)
    raw_ang = np.arctan2(raw[..., 1], raw[..., 0])
    cur = {"flow": flow, "mag": mag, "ang": ang, "raw_mag": raw_mag, "raw_ang": raw_ang}

    def pairs(key: str) -> tuple[np.ndarray, np.ndarray]:
        """(earlier, later) arrays of the consecutive pairs that end in this chunk."""
        x = cur[key]
        if prev is None:
            return x[:-1], x[1:]
        return np.concatenate([prev[key][None], x[:-1]]), x

    before, after = pairs("flow")
    n_after = len(after)
    if n_after:
        acc = np.linalg.norm(after - before, axis=-1)
        acc_flat = acc.reshape(n_after, -1)
        out["acc_mean"] = acc_flat.mean(axis=1, dtype=np.float64)
        out["acc_p90"] = np.percentile(acc_flat, 90, axis=1)
        out["acc_fr2"] = (acc_flat > 2).mean(axis=1)
        acc_cells = _cells(acc)
        out["acc_cellmax"] = acc_cells.max(axis=1)
        out["ha"] = _histograms(acc, _ACC_BINS) / acc_flat.shape[1]

        top_after = top[t - n_after :]
        top_acc = (acc_flat * top_after).sum(axis=1, dtype=np.float64) / n_top[t - n_after :]
        out["top_acc"] = top_acc
        out["acc_ratio"] = top_acc / (top_mag[t - n_after :] + 1e-3)
        (m0, m1), (a0, a1) = pairs("mag"), pairs("ang")
        both = (m1 > 1) & (m0 > 1)
        dang = _abs_angle_change(a1, a0) * both
        n_both = both.sum(axis=(1, 2))
        dang_sum = dang.sum(axis=(1, 2), dtype=np.float64)
        out["dang"] = np.where(n_both > _MIN_DANG_PX, dang_sum / np.maximum(n_both, 1), 0.0)
        out["l_acc_mean"] = acc_cells
        out["l_acc_p90"] = np.percentile(_cell_rows(acc), 90, axis=2)
        out["l_dang"] = _cells(dang)

        # ViF: pixels whose magnitude (orientation) change is at least the pair's mean change
        (r0, r1), (o0, o1) = pairs("raw_mag"), pairs("raw_ang")
        dm = np.abs(r1 - r0)
        da = _abs_angle_change(o1, o0) * (r1 > _VIF_MOVING)
        out["vif_m"] = (dm >= dm.mean(axis=(1, 2), keepdims=True)).sum(axis=0)[None]
        out["vif_o"] = (da >= da.mean(axis=(1, 2), keepdims=True)).sum(axis=0)[None]
    else:
        for key in ("acc_mean", "acc_p90", "acc_fr2", "acc_cellmax", "top_acc", "acc_ratio", "dang"):
            out[key] = np.zeros(0)
        out["ha"] = np.zeros((0, len(_ACC_BINS) - 1))
        for key in ("l_acc_mean", "l_acc_p90", "l_dang"):
            out[key] = np.zeros((0, n_cells))
        out["vif_m"] = out["vif_o"] = np.zeros((1, h, w), dtype=np.intp)
    out["n_after"] = np.array([n_after])
    return out, {k: x[-1].copy() for k, x in cur.items()}


def _flow_features(series: dict[str, np.ndarray]) -> np.ndarray:
    feats = [_series_stats(series[k]) for k in _FLOW_SERIES]
    for key, bins in _FLOW_HISTS:
        hist = series[key] if len(series[key]) else np.zeros((1, bins))
        feats += [hist.mean(axis=0), hist.std(axis=0)]
    return np.concatenate(feats)


def _extra_features(series: dict[str, np.ndarray]) -> np.ndarray:
    """Top-5% magnitude / acceleration / their ratio, angular change, motion-energy fluctuation:
    mean, std, max, median of each per-pair series (zeros where a series is empty)."""
    m = series["mean"]
    fluct = np.abs(np.diff(m, 2)) / (m.mean() + 1e-3) if len(m) > 2 else np.zeros(1)
    feats = []
    for key in _EXTRA_SERIES:
        s = fluct if key == "mag_fluct" else series[key]
        s = s if len(s) else np.zeros(1)
        feats.append([s.mean(), s.std(), s.max(), np.median(s)])
    return np.ravel(feats)


def _vif_features(series: dict[str, np.ndarray]) -> np.ndarray:
    """ViF / orientation ViF: per-cell 20-bin histograms of the fraction of pair-to-pair changes at
    which each pixel changed at least as much as the pair's mean, then the same histograms sorted
    over cells per bin (top 4 cells). One pair only: every pixel counts as changed (fraction 1)."""
    n = int(series["n_after"].sum())
    edges = np.linspace(0.0, 1.0, _VIF_BINS + 1)
    feats = []
    for key in ("vif_m", "vif_o"):
        counts = series[key].sum(axis=0)
        frac = counts / n if n else np.ones(counts.shape)
        h, w = frac.shape
        bins = np.clip(np.searchsorted(edges, frac, side="right") - 1, 0, _VIF_BINS - 1)
        n_cells = _GRID * _GRID
        hist = np.bincount((_cell_index(h, w) * _VIF_BINS + bins).ravel(), minlength=n_cells * _VIF_BINS)
        hist = hist.reshape(n_cells, _VIF_BINS) / (h * w / n_cells)
        feats += [hist.ravel(), -np.sort(-hist, axis=0)[:_VIF_TOP].ravel()]
    return np.concatenate(feats)


def _local_features(series: dict[str, np.ndarray]) -> np.ndarray:
    """Per-cell series summarised over time (mean, std, max, mean |step|), combined over the 16
    cells by max, mean, the top-energy cell and the mean of the 3 top-energy cells, then the 4
    largest cell energies over the mean energy (energy: mean magnitude + mean acceleration)."""
    n_cells = _GRID * _GRID
    per_cell = []
    for key in _LOCAL_SERIES:
        s = series[f"l_{key}"]
        s = s if len(s) else np.zeros((1, n_cells))
        steps = np.abs(np.diff(s, axis=0)).mean(axis=0) if len(s) > 1 else np.zeros(n_cells)
        per_cell += [s.mean(axis=0), s.std(axis=0), s.max(axis=0), steps]
    cellf = np.stack(per_cell, axis=1)  # (16, 40)
    acc = series["l_acc_mean"]
    energy = series["l_mag_mean"].mean(axis=0) + (acc.mean(axis=0) if len(acc) else 0.0)
    order = np.argsort(-energy, kind="stable")
    conc = np.sort(energy)[::-1][:_LOCAL_CONC] / (energy.mean() + 1e-3)
    return np.concatenate([cellf.max(axis=0), cellf.mean(axis=0), cellf[order[0]], cellf[order[:3]].mean(axis=0), conc])


def _diff_features(pooled: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Frame-difference statistics of pooled gray frames (N, h, w) uint8, N >= 2."""
    diff = np.abs(np.diff(pooled.astype(np.float64), axis=0)) * (_REF_DT_S / dt)[:, None, None]
    t = diff.shape[0]
    flat = diff.reshape(t, -1)
    cells = _cells(diff)
    series = {
        "m": flat.mean(axis=1, dtype=np.float64),
        "p90": np.percentile(flat, 90, axis=1),
        "fr10": (flat > 10).mean(axis=1),
        "fr25": (flat > 25).mean(axis=1),
        "cellmax": cells.max(axis=1),
        "cellratio": cells.max(axis=1) / (cells.mean(axis=1) + 1e-3),
        "dd": np.abs(np.diff(diff, axis=0)).mean(axis=(1, 2), dtype=np.float64) if t > 1 else np.zeros(1),
    }
    return np.concatenate([_series_stats(series[k]) for k in _DIFF_SERIES])
