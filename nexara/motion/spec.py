"""The motion feature set: its version, the constants that define it, the feature names in vector
order, and :class:`MotionSpec` (how the flow is computed; its hash names the feature set in caches
and manifests). Changing any constant here changes the vectors: bump :data:`MOTION_VERSION`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["MOTION_DIM", "MOTION_VERSION", "FarnebackParams", "MotionSpec", "motion_feature_names"]

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
