"""Motion stream: clip-level statistics of dense optical flow and frame differences.

One clip -> one vector of :data:`MOTION_DIM` (1215) float32 features, in the order of
:func:`motion_feature_names`. The first 231 are the flow-v1 set (unchanged), then the flow-v2
groups (extras 20, ViF 800, local 164):

* 182 ``flow_*`` features from dense Farneback flow. Frames are sampled at ``spec.fps`` (~10 fps),
  converted to gray at ``spec.size_hw`` (240x320), the flow between consecutive samples is
  computed at that size and mean-pooled to ``spec.pooled_hw`` (120x160). Units are pixels *at the
  pooled resolution* per 0.1 s (each pair's flow is divided by its time step), and with
  ``spec.compensate`` each pair's median flow (global camera motion) is subtracted. Per frame pair:
  magnitude mean / p50 / p90 / p99 and fraction above 1, 2, 4; a rotation-invariant (sorted) 8-bin
  direction histogram of the moving pixels and its entropy; coherence of the moving pixels;
  mean |divergence| and |curl|; max, max/mean ratio and entropy of a 4x4 grid of cell means; and
  the "acceleration" |flow(t) - flow(t-1)|: mean, p90, fraction above 2, max cell mean. Each of
  these 18 series is summarised over the clip by mean, std, max, p90, p10, mean |step| and max
  |step| (``flow_<stat>_<summary>``, 126 values), followed by the mean and std over the clip of
  three histograms: magnitude (11 bins, ``flow_hm<j>_*``), sorted direction (8, ``flow_hd<j>_*``)
  and acceleration (9, ``flow_ha<j>_*``).
* 49 ``fd_*`` features from absolute frame differences of the pooled gray frames (per 0.1 s):
  mean, p90, fraction above 10 and 25, max cell and max/mean cell ratio (4x4 grid), and the mean
  change of the difference image, each summarised by the same 7 statistics.
* 20 ``ex_*`` extras from the same (compensated, per 0.1 s) flow: per pair the mean magnitude of
  the top 5% moving pixels (``top_mag``), their mean acceleration from the previous pair
  (``top_acc``) and its ratio to ``top_mag``, the mean angular change of the pixels moving by more
  than 1 in both pairs (``dang``, 0 unless more than 5 such pixels) and the clip's motion-energy
  fluctuation |second difference of the mean magnitude| / its clip mean (``mag_fluct``); each
  summarised by mean, std, max and median.
* 800 ``vif_*`` / ``ovif_*``: Violent Flows (Hassner 2012) and its orientation variant, on the
  *raw* flow (pooled px per pair, not time-normalised or compensated, as in the research recipe):
  the fraction of consecutive-pair changes at which a pixel's magnitude (orientation, counted
  where the magnitude is above 0.5) changed at least as much as that pair's mean change; per cell
  of the 4x4 grid a 20-bin histogram of that fraction over [0, 1] (``<kind>_c<cell>_b<bin>``, 320)
  and the same histograms sorted over cells per bin, top 4 cells (``<kind>_top<rank>_b<bin>``, 80).
* 164 ``loc_*`` local statistics: 10 per-cell series (mean / p90 magnitude, fraction above 2,
  mean / p90 acceleration, angular change (pixels moving in both pairs), |divergence|, |curl|,
  coherence |mean flow| / mean magnitude, entropy of the magnitude-weighted 8-bin direction
  histogram), each summarised per cell by mean, std, max and mean |step|, combined over cells by
  max, mean, the top-energy cell and the mean of the top-3 cells (``loc_<agg>_<series>_<summary>``),
  then the 4 largest cell energies (mean magnitude + mean acceleration) over their mean
  (``loc_conc<rank>``).

This is a port of the research recipe "Motion v1 computed at 320x240 (10 fps), pooled to
160x120, camera-motion compensated, flow + diff features" (research names are the same without
the ``flow_`` prefix) plus ``motion_feats2.extras`` / ``vif`` and ``motion_local.local_feats``
(vectorised; on the same flows they agree with the research functions to ~1e-4). With a single
frame pair the research code duplicated the pair, which this reproduces: no change between pairs,
every ViF pixel counted as changed. Frames are picked by :func:`nexara.media.iter_frames` (the frame nearest
each 1/fps slot) where the research code took the first frame at or after each slot: for
10/20/30 fps sources the frames are the same, for 25/24/12 fps sources neighbouring frames are
used, which moves individual clip vectors (not their discriminative power).

OpenCV is imported lazily and limited to one thread per call, so the module is cheap to import
and safe in Ray tasks with fractional CPUs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nexara.media import Source, iter_frames

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = [
    "MOTION_DIM",
    "MOTION_VERSION",
    "FarnebackParams",
    "MotionSpec",
    "clip_motion",
    "motion_feature_names",
    "motion_from_flows",
    "motion_from_gray",
    "pair_flow",
    "pool_gray",
]

logger = logging.getLogger(__name__)

MOTION_VERSION = "flow-v2"

# Flow and difference values are normalised to this time step (seconds) before any threshold.
_REF_DT_S = 0.1
# Smallest time step between two samples (guards against repeated or out-of-order timestamps).
_MIN_DT_S = 1e-3
# Bin edges of the magnitude and acceleration histograms (pooled px per 0.1 s; last bin = the rest).
_MAG_BINS = np.array([0, 0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 1e9])
_ACC_BINS = np.array([0, 0.25, 0.5, 1, 2, 3, 4, 6, 8, 1e9])
_DIR_BINS = 8
_GRID = 4  # cells per side of the spatial grid
_MOVING_PX = 1.0  # magnitude above which a pixel counts as moving (direction histogram, coherence)
_MIN_MOVING = 10  # coherence is 0 unless more pixels than this move
# Frame pairs processed at once by the statistics (bounds the memory of long clips).
_CHUNK = 64

_SUMMARIES = ("mean", "std", "max", "p90", "p10", "dmean", "dmax")
_FLOW_SERIES = (
    "mean", "p50", "p90", "p99", "fr1", "fr2", "fr4", "dir_ent", "coh", "div", "curl",
    "cellmax", "cellratio", "cellent", "acc_mean", "acc_p90", "acc_fr2", "acc_cellmax",
)  # fmt: skip
_FLOW_HISTS = (("hm", len(_MAG_BINS) - 1), ("hd", _DIR_BINS), ("ha", len(_ACC_BINS) - 1))
_DIFF_SERIES = ("m", "p90", "fr10", "fr25", "cellmax", "cellratio", "dd")
# flow-v2 groups
_EXTRA_SERIES = ("top_mag", "top_acc", "acc_ratio", "dang", "mag_fluct")
_EXTRA_SUMMARIES = ("mean", "std", "max", "median")
_TOP_Q = 95  # percentile of the magnitude above which a pixel is one of the "top" movers
_MIN_DANG_PX = 5  # angular change is 0 unless more pixels than this move in both pairs
_VIF_BINS = 20
_VIF_TOP = 4  # cell-sorted histograms keep the top cells per bin
_VIF_MOVING = 0.5  # raw magnitude (pooled px per pair) above which the orientation change counts
_LOCAL_SERIES = (
    "mag_mean", "mag_p90", "fr2", "acc_mean", "acc_p90", "dang", "div", "curl", "coh", "dir_ent",
)  # fmt: skip
_LOCAL_SUMMARIES = ("mean", "std", "max", "dmean")
_LOCAL_AGGS = ("max", "mean", "top1", "top3")
_LOCAL_CONC = 4


def motion_feature_names() -> list[str]:
    """The :data:`MOTION_DIM` feature names, in vector order (stable for a :data:`MOTION_VERSION`)."""
    names = [f"flow_{s}_{x}" for s in _FLOW_SERIES for x in _SUMMARIES]
    for prefix, bins in _FLOW_HISTS:
        names += [f"flow_{prefix}{j}_{x}" for x in ("mean", "std") for j in range(bins)]
    names += [f"fd_{s}_{x}" for s in _DIFF_SERIES for x in _SUMMARIES]
    names += [f"ex_{s}_{x}" for s in _EXTRA_SERIES for x in _EXTRA_SUMMARIES]
    cells = _GRID * _GRID
    for kind in ("vif", "ovif"):
        names += [f"{kind}_c{c}_b{j}" for c in range(cells) for j in range(_VIF_BINS)]
        names += [f"{kind}_top{r}_b{j}" for r in range(_VIF_TOP) for j in range(_VIF_BINS)]
    names += [f"loc_{a}_{s}_{x}" for a in _LOCAL_AGGS for s in _LOCAL_SERIES for x in _LOCAL_SUMMARIES]
    names += [f"loc_conc{r}" for r in range(_LOCAL_CONC)]
    return names


MOTION_DIM = len(motion_feature_names())
_FLOW_DIM = len(_FLOW_SERIES) * len(_SUMMARIES) + 2 * sum(bins for _, bins in _FLOW_HISTS)


# --- spec --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FarnebackParams:
    """Arguments of ``cv2.calcOpticalFlowFarneback`` (flags are always 0)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2


@dataclass(frozen=True, slots=True)
class MotionSpec:
    """How motion features are computed. ``hash()`` names the feature set (caches, manifests).

    ``fps``: sampling rate of the frames the flow is computed between. ``size_hw``: gray frame size
    the flow is computed at (frames are squashed to it). ``pooled_hw``: the flow (and the frames
    for the difference features) are mean-pooled to this size; it must divide ``size_hw`` and be a
    multiple of 4 (the cell grid). ``compensate``: subtract each pair's median flow.
    """

    fps: float = 10.0
    size_hw: tuple[int, int] = (240, 320)
    pooled_hw: tuple[int, int] = (120, 160)
    farneback: FarnebackParams = field(default_factory=FarnebackParams)
    compensate: bool = True

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps!r}")
        (h, w), (ph, pw) = self.size_hw, self.pooled_hw
        if min(h, w, ph, pw) < 1 or h % ph or w % pw:
            raise ValueError(f"pooled_hw {self.pooled_hw} must divide size_hw {self.size_hw}")
        if ph % _GRID or pw % _GRID:
            raise ValueError(f"pooled_hw {self.pooled_hw} must be a multiple of {_GRID} on both sides")

    def to_dict(self) -> dict[str, Any]:
        return {"version": MOTION_VERSION, **asdict(self)}

    def hash(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of the spec and :data:`MOTION_VERSION`."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- features ----------------------------------------------------------------------------------


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


def _check_frames(frames: np.ndarray, times_s: np.ndarray, spec: MotionSpec) -> None:
    if frames.ndim != 3 or frames.dtype != np.uint8 or tuple(frames.shape[1:]) != tuple(spec.size_hw):
        raise ValueError(
            f"expected (N, {spec.size_hw[0]}, {spec.size_hw[1]}) uint8 frames, got {frames.dtype} {frames.shape}"
        )
    if times_s.shape != (frames.shape[0],):
        raise ValueError(f"expected {frames.shape[0]} timestamps, got shape {times_s.shape}")


def _check_gray(gray: np.ndarray, spec: MotionSpec, what: str) -> None:
    if gray.ndim != 2 or gray.dtype != np.uint8 or tuple(gray.shape) != tuple(spec.size_hw):
        raise ValueError(
            f"expected {what} to be a ({spec.size_hw[0]}, {spec.size_hw[1]}) uint8 gray frame "
            f"(spec.size_hw), got {gray.dtype} {gray.shape}"
        )


def pair_flow(prev_gray: np.ndarray, gray: np.ndarray, dt_s: float, spec: MotionSpec) -> tuple[np.ndarray, np.ndarray]:
    """Dense Farneback flow from ``prev_gray`` to ``gray`` (both (H, W) uint8 at ``spec.size_hw``),
    ``dt_s`` seconds apart, mean-pooled to ``spec.pooled_hw``.

    Returns ``(flow_scaled, flow_raw)``, each (ph, pw, 2) float32 (x, y): ``flow_raw`` in pooled
    pixels per pair (what ViF uses), ``flow_scaled`` in pooled pixels per 0.1 s (divided by
    ``dt_s``, clamped to >= 1 ms) with the pair's median flow subtracted when ``spec.compensate``.
    These are exactly the per-pair flows :func:`motion_from_gray` computes, so
    :func:`motion_from_flows` on them gives its vector bit for bit.
    """
    import cv2

    _check_gray(prev_gray, spec, "prev_gray")
    _check_gray(gray, spec, "gray")
    cv2.setNumThreads(1)
    dt = max(float(dt_s), _MIN_DT_S)
    (h, w), (ph, pw) = spec.size_hw, spec.pooled_hw
    fy, fx = h // ph, w // pw
    fb = spec.farneback
    # (the OpenCV stubs do not allow flow=None, the documented way to get a new array)
    full = cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
        prev_gray, gray, None,
        fb.pyr_scale, fb.levels, fb.winsize, fb.iterations, fb.poly_n, fb.poly_sigma, 0,
    )  # fmt: skip
    flow = full.reshape(ph, fy, pw, fx, 2).mean(axis=(1, 3))
    # ViF uses the flow in pooled px per pair, neither time-normalised nor compensated
    raw = flow * np.array([pw / w, ph / h], dtype=np.float32)
    # pooled px per 0.1 s: x and y scale to the pooled size, then divide by the pair's time step
    flow *= (np.array([pw / w, ph / h]) * (_REF_DT_S / dt)).astype(np.float32)
    if spec.compensate:
        # (median over a contiguous copy of each component: several times faster than strided)
        flow -= np.median(np.moveaxis(flow, 2, 0).reshape(2, -1), axis=1)
    return flow, raw


def pool_gray(gray: np.ndarray, spec: MotionSpec) -> np.ndarray:
    """A (H, W) uint8 gray frame at ``spec.size_hw`` mean-pooled (``cv2.INTER_AREA``) to
    ``spec.pooled_hw``: the frames the difference features of :func:`motion_from_flows` use."""
    import cv2

    _check_gray(gray, spec, "gray")
    (h, w), (ph, pw) = spec.size_hw, spec.pooled_hw
    if (h, w) == (ph, pw):
        return gray
    return cv2.resize(gray, (pw, ph), interpolation=cv2.INTER_AREA)


def _series(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-pair statistics of consecutive chunks of (flow_scaled, flow_raw) (T, ph, pw, 2)."""
    out: list[dict[str, np.ndarray]] = []
    prev: dict[str, np.ndarray] | None = None
    for flow, raw in chunks:
        stats, prev = _pair_stats(flow, raw, prev)
        out.append(stats)
    return {k: np.concatenate([c[k] for c in out]) for k in out[0]}


def _vector(series: dict[str, np.ndarray], pooled: np.ndarray, dt: np.ndarray) -> np.ndarray:
    vec = np.concatenate(
        [
            _flow_features(series),
            _diff_features(pooled, dt),
            _extra_features(series),
            _vif_features(series),
            _local_features(series),
        ]
    )
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def motion_from_flows(
    flows_scaled: Sequence[np.ndarray] | np.ndarray,
    flows_raw: Sequence[np.ndarray] | np.ndarray,
    pooled_frames: Sequence[np.ndarray] | np.ndarray,
    dt: Sequence[float] | np.ndarray,
    spec: MotionSpec | None = None,
) -> np.ndarray:
    """Motion features of N frames from their N-1 per-pair flows (:func:`pair_flow`), their N pooled
    gray frames (:func:`pool_gray`) and the N-1 time steps between them (seconds; clamped to
    >= 1 ms).

    ``flows_scaled`` / ``flows_raw``: N-1 arrays (ph, pw, 2) float32 (or one (N-1, ph, pw, 2)
    array); ``pooled_frames``: N (ph, pw) uint8. Returns the (:data:`MOTION_DIM`,) float32 vector
    :func:`motion_from_gray` returns for the same frames and times, bit for bit (the pairs are
    processed in the same chunks). Fewer than 2 frames: the zero vector.
    """
    spec = spec or MotionSpec()
    dt = np.clip(np.asarray(dt, dtype=np.float64).reshape(-1), _MIN_DT_S, None)
    n_pairs = len(dt)
    ph, pw = spec.pooled_hw
    if len(flows_scaled) != n_pairs or len(flows_raw) != n_pairs or len(pooled_frames) != n_pairs + 1:
        raise ValueError(
            f"expected N-1 flows and time steps for N pooled frames, got {len(flows_scaled)} scaled flows, "
            f"{len(flows_raw)} raw flows, {n_pairs} time steps and {len(pooled_frames)} pooled frames"
        )
    pooled = np.asarray(pooled_frames)
    if pooled.ndim != 3 or pooled.dtype != np.uint8 or tuple(pooled.shape[1:]) != (ph, pw):
        raise ValueError(f"expected (N, {ph}, {pw}) uint8 pooled frames, got {pooled.dtype} {pooled.shape}")
    if n_pairs < 1:
        return np.zeros(MOTION_DIM, dtype=np.float32)

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, n_pairs, _CHUNK):
            stop = min(start + _CHUNK, n_pairs)
            pair = []
            for flows in (flows_scaled, flows_raw):
                block = np.stack([np.asarray(flows[k]) for k in range(start, stop)])
                if block.dtype != np.float32 or block.shape[1:] != (ph, pw, 2):
                    raise ValueError(f"expected ({ph}, {pw}, 2) float32 flows, got {block.dtype} {block.shape[1:]}")
                pair.append(block)
            yield pair[0], pair[1]

    return _vector(_series(chunks()), pooled, dt)


def motion_from_gray(frames: np.ndarray, times_s: np.ndarray, spec: MotionSpec | None = None) -> np.ndarray:
    """Motion features of gray frames (N, H, W) uint8 at ``spec.size_hw`` with their times (N,) s.

    Returns a (:data:`MOTION_DIM`,) float32 vector, always finite. With fewer than 2 frames there
    is no motion to measure and the vector is all zeros. Time steps below 1 ms (repeated
    timestamps) are clamped to 1 ms. Same as :func:`pair_flow` on every consecutive pair followed
    by :func:`motion_from_flows` (with the flows of at most 64 pairs in memory at once).
    """
    spec = spec or MotionSpec()
    frames = np.asarray(frames)
    times_s = np.asarray(times_s, dtype=np.float64)
    _check_frames(frames, times_s, spec)
    n = frames.shape[0]
    if n < 2:
        return np.zeros(MOTION_DIM, dtype=np.float32)
    dt = np.clip(np.diff(times_s), _MIN_DT_S, None)
    ph, pw = spec.pooled_hw

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, n - 1, _CHUNK):
            stop = min(start + _CHUNK, n - 1)
            flow = np.empty((stop - start, ph, pw, 2), dtype=np.float32)
            raw = np.empty_like(flow)
            for k in range(start, stop):
                flow[k - start], raw[k - start] = pair_flow(frames[k], frames[k + 1], float(dt[k]), spec)
            yield flow, raw

    series = _series(chunks())
    pooled = np.stack([pool_gray(f, spec) for f in frames])
    return _vector(series, pooled, dt)


def clip_motion(
    source: Source,
    *,
    spec: MotionSpec | None = None,
    timeout_s: float = 10.0,
    max_seconds: float | None = None,
    options: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Motion features (:data:`MOTION_DIM`,) float32 of a video: path, URL or bytes.

    Decodes the source once with :func:`nexara.media.iter_frames` at ``spec.fps`` and
    ``spec.size_hw`` (squashed), converts to gray and calls :func:`motion_from_gray` (``spec``
    None means ``MotionSpec()``). A one-frame video gives the zero vector.
    ``max_seconds`` keeps only the first seconds of the video (needed for live streams).
    Unreadable sources raise the typed :class:`nexara.errors.MediaError` subclasses.
    """
    import cv2

    spec = spec or MotionSpec()
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds!r}")
    cv2.setNumThreads(1)
    started = time.perf_counter()
    grays: list[np.ndarray] = []
    times: list[float] = []
    with iter_frames(
        source, fps=spec.fps, size_hw=spec.size_hw, resize="squash", timeout_s=timeout_s, options=options
    ) as frames:
        for frame in frames:
            if max_seconds is not None and times and frame.time_s - times[0] > max_seconds:
                break
            grays.append(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY))
            times.append(frame.time_s)
    decoded = time.perf_counter()
    h, w = spec.size_hw
    stack = np.stack(grays) if grays else np.zeros((0, h, w), dtype=np.uint8)
    vec = motion_from_gray(stack, np.asarray(times, dtype=np.float64), spec)
    logger.debug(
        "%s: motion from %d frames: decode %.0f ms, features %.0f ms",
        frames.label,
        len(grays),
        (decoded - started) * 1e3,
        (time.perf_counter() - decoded) * 1e3,
    )
    return vec
