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

from nexara.motion.clips import clip_motion, gray_frames, motion_from_flows, motion_from_gray, window_motion
from nexara.motion.flow import pair_flow, pool_gray
from nexara.motion.spec import MOTION_DIM, MOTION_VERSION, FarnebackParams, MotionSpec, motion_feature_names

__all__ = [
    "MOTION_DIM",
    "MOTION_VERSION",
    "FarnebackParams",
    "MotionSpec",
    "clip_motion",
    "gray_frames",
    "motion_feature_names",
    "motion_from_flows",
    "motion_from_gray",
    "pair_flow",
    "pool_gray",
    "window_motion",
]
