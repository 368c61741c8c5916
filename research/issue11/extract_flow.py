"""Step 1b: flow-statistics vectors (nexara.motion, the shipped model's MotionSpec, hash 346141a5cf06eeec)
for every clip of both datasets: the whole clip (identical to nexara.motion.clip_motion) and every 2-s window
(same window bounds as extract_i3d.windows, from the native frame timestamps).

Usage: nice -n 19 ../../.venv/bin/python extract_flow.py [--datasets sf,vp] [--limit N]
Output: feats/flow_whole_<ds>.npz (clip, motion (N,1215) f32), feats/flow_windows_<ds>.npz (clip,start_s,end_s,motion)
"""
from __future__ import annotations

import argparse
import csv
import time

import av
import cv2
import numpy as np

from extract_i3d import DATA, OUT, windows
from nexara.media import iter_frames
from nexara.motion import MotionSpec
from nexara.motion.clips import motion_from_flows, motion_from_gray
from nexara.motion.flow import pair_flow, pool_gray

SPEC = MotionSpec()
assert SPEC.hash() == "346141a5cf06eeec"


def native_times(path) -> np.ndarray:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(s) if p.pts is not None)
        tb = float(s.time_base)
        rate = float(s.average_rate or 25)
    t = np.asarray(pts, dtype=np.float64) * tb
    if len(t) < 2:
        return np.arange(max(len(t), 1)) / rate
    return t - t[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="sf,vp")
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    for ds in a.datasets.split(","):
        rows = list(csv.DictReader(open(DATA[ds] / "clips.csv")))
        if a.limit:
            rows = rows[: a.limit]
        whole, wrec = [], {"clip": [], "start_s": [], "end_s": [], "motion": []}
        t0 = time.time()
        for ci, r in enumerate(rows):
            path = DATA[ds] / r["clip"]
            grays, times = [], []
            with iter_frames(str(path), fps=SPEC.fps, size_hw=SPEC.size_hw, resize="squash") as frames:
                for f in frames:
                    grays.append(cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY))
                    times.append(f.time_s)
            g, tt = np.stack(grays), np.asarray(times, dtype=np.float64)
            # each consecutive pair's flow once per clip; windows reuse them (motion_from_flows is bit-identical)
            dt = np.clip(np.diff(tt), 1e-3, None)
            fl = [pair_flow(g[k], g[k + 1], float(dt[k]), SPEC) for k in range(len(g) - 1)]
            fs = [f[0] for f in fl]; fr = [f[1] for f in fl]
            pooled = np.stack([pool_gray(f, SPEC) for f in g])
            whole.append(motion_from_flows(fs, fr, pooled, dt, SPEC))
            t_nat = native_times(path)
            rel = tt - tt[0]
            for s, e, _ in windows(t_nat):
                m = (rel >= s - 1e-6) & (rel < e - 1e-6)
                if m.sum() < 2:
                    m = np.ones_like(m)
                wrec["clip"].append(r["clip"]); wrec["start_s"].append(s); wrec["end_s"].append(e)
                k = np.flatnonzero(m)
                k0, k1 = k[0], k[-1]  # contiguous run of frames
                wrec["motion"].append(motion_from_flows(fs[k0:k1], fr[k0:k1], pooled[k0 : k1 + 1], dt[k0:k1], SPEC))
            if ci % 25 == 0:
                print(f"{ds} flow {ci+1}/{len(rows)} {time.time()-t0:.0f}s", flush=True)
        tag = f"_lim{a.limit}" if a.limit else ""
        np.savez(OUT / f"flow_whole_{ds}{tag}.npz", clip=np.asarray([r["clip"] for r in rows]),
                 motion=np.stack(whole).astype(np.float32))
        np.savez(OUT / f"flow_windows_{ds}{tag}.npz", **{k: np.asarray(v) for k, v in wrec.items()})
        print(f"saved flow {ds}: {len(rows)} clips, {len(wrec['clip'])} windows, {time.time()-t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
