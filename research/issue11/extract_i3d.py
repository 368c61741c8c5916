"""Step 1: I3D (Kinetics-400) features for 2-s windows and whole clips, both shared datasets.

Usage: nice -n 19 ../../.venv/bin/python extract_i3d.py --phase whole|windows|motion [--limit N] [--datasets sf,vp]

Per clip the video is decoded once (PyAV) per phase. Frames are sampled:
- whole:   32 frames evenly over the clip (clip_frame_indices; the issue's recipe), centre crop; and the
           motion crop (see below) over the same 32 frames.
- windows: 2-s windows, hop 1 s, starts 0,1,2,... while start+2 <= duration, plus a last window [d-2, d] when
           more than 0.25 s would stay uncovered; 32 frames at 16 fps (t = start + k/16, nearest frame by time).
           Clips shorter than 2 s: one window = whole clip, 32 frames evenly over it.
Preprocessing: nexara.backbones.i3d.clip_to_input (short side 256 bilinear antialiased, centre crop 224, [-1,1]).
Motion crop: abs grey frame differences of the sampled frames (at 1/8 resolution) summed over time, the square box
of side 0.5 x short side with the largest energy (box filter, argmax), cropped from native frames, resized 224x224.
Output: feats/<phase>_<ds>.npz with clip, start_s, end_s, pooled (N,1024) f16, logits (N,400) f16 (+ mpooled/mlogits).
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
import os

import av
import numpy as np
import torch
import torch.nn.functional as F

from nexara.backbones.i3d import build_i3d, clip_to_input

torch.set_num_threads(2)
SHARED = Path(os.environ.get("NEXARA_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data"
DATA = {"sf": SHARED / "surveillance-fight", "vp": SHARED / "vioperu"}
OUT = Path(__file__).parent / "feats"
WIN_S, HOP_S, FPS, T = 2.0, 1.0, 16, 32


def clip_frame_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """num_frames indices spread evenly from the first to the last frame (the issue's whole-clip recipe)."""
    return np.linspace(0, max(total_frames - 1, 0), num_frames).round().astype(np.int64)


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.time) if f.time is not None else np.nan)
    t = np.asarray(times)
    if np.isnan(t).any() or len(t) < 2:
        rate = float(s.average_rate or 25)
        t = np.arange(len(frames)) / rate
    t = t - t[0]
    return frames, t


def clip_duration(t: np.ndarray) -> float:
    step = np.median(np.diff(t)) if len(t) > 1 else 1 / 25
    return float(t[-1] + step)


def windows(t: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
    d = clip_duration(t)
    if d < WIN_S:
        return [(0.0, d, clip_frame_indices(len(t), T))]
    starts = list(np.arange(0.0, d - WIN_S + 1e-6, HOP_S))
    if d - (starts[-1] + WIN_S) > 0.25:
        starts.append(d - WIN_S)
    out = []
    for s in starts:
        want = s + np.arange(T) / FPS
        idx = np.abs(t[None, :] - want[:, None]).argmin(axis=1)
        out.append((float(s), float(s + WIN_S), idx))
    return out


def motion_box(frames: np.ndarray) -> tuple[int, int, int]:
    """frames (T,H,W,3) uint8 -> (top, left, side) of the square box (0.5 x short side) with most motion."""
    g = torch.from_numpy(frames).float().mean(dim=3)  # T,H,W
    h, w = g.shape[1:]
    k = 8
    small = F.avg_pool2d(g.unsqueeze(1), k, k, ceil_mode=True).squeeze(1)
    e = (small[1:] - small[:-1]).abs().sum(0)  # h', w'
    side = int(0.5 * min(h, w))
    bs = max(1, side // k)
    box = F.avg_pool2d(e[None, None], (min(bs, e.shape[0]), min(bs, e.shape[1])), stride=1).squeeze()
    box = box.reshape(box.shape[-2] if box.dim() == 2 else 1, -1)
    i = int(box.argmax())
    r, c = divmod(i, box.shape[1])
    top, left = min(r * k, h - side), min(c * k, w - side)
    return top, left, side


def motion_crop_input(frames: np.ndarray, crop_px: int = 224) -> tuple[torch.Tensor, tuple[int, int, int]]:
    top, left, side = motion_box(frames)
    x = torch.from_numpy(frames[:, top : top + side, left : left + side]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(crop_px, crop_px), mode="bilinear", align_corners=False, antialias=True)
    return (x / 127.5 - 1.0).clamp_(-1.0, 1.0).permute(1, 0, 2, 3).unsqueeze(0).contiguous(), (top, left, side)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", required=True, choices=["whole", "windows", "wmotion"])
    ap.add_argument("--datasets", default="sf,vp")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    # channels_last_3d: same outputs (max |diff| 1e-6) and 1.7-4x faster on this CPU (bench_cl.py)
    model = build_i3d().eval().to(memory_format=torch.channels_last_3d)
    for ds in a.datasets.split(","):
        rows = list(csv.DictReader(open(DATA[ds] / "clips.csv")))
        if a.limit:
            rows = rows[:: max(1, len(rows) // a.limit)][: a.limit]
        if a.phase != "whole":
            # shuffled (seed 0) and saved every 20 clips, so a run cut short leaves a representative subset
            rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
        tag = f"_lim{a.limit}" if a.limit else ""
        rec: dict[str, list] = {k: [] for k in ["clip", "start_s", "end_s", "pooled", "logits", "mpooled", "mlogits", "box"]}
        prev = OUT / f"{a.phase}_{ds}{tag}.npz"
        if a.resume and prev.exists():  # keep the rows of a run that was cut short, do the other clips
            old = np.load(prev)
            for k in old.files:
                rec[k] = list(old[k])
            done = set(old["clip"])
            rows = [r for r in rows if r["clip"] not in done]
        t0, n_pass, t_dec, t_net = time.time(), 0, 0.0, 0.0
        for ci, r in enumerate(rows):
            td = time.time()
            frames, t = decode(DATA[ds] / r["clip"])
            if a.phase == "whole":
                wins = [(0.0, clip_duration(t), clip_frame_indices(len(frames), T))]
            else:
                wins = windows(t)
            inputs, minputs = [], []
            for s, e, idx in wins:
                sel = np.stack([frames[i] for i in idx])
                inputs.append(clip_to_input(sel))
                if a.phase in ("whole", "wmotion"):
                    mi, b = motion_crop_input(sel)
                    minputs.append(mi)
                    rec["box"].append(b)
                rec["clip"].append(r["clip"]); rec["start_s"].append(s); rec["end_s"].append(e)
            del frames
            t_dec += time.time() - td
            tn = time.time()
            for key, xs in (("", inputs), ("m", minputs)):
                if a.phase == "wmotion" and key == "":
                    continue
                for b0 in range(0, len(xs), a.batch):
                    with torch.inference_mode():
                        o = model(torch.cat(xs[b0 : b0 + a.batch]).contiguous(memory_format=torch.channels_last_3d))
                    rec[key + "pooled"].extend(o.pooled.numpy().astype(np.float16))
                    rec[key + "logits"].extend(o.logits.numpy().astype(np.float16))
                    n_pass += len(xs[b0 : b0 + a.batch])
            t_net += time.time() - tn
            if ci % 20 == 0 or ci == len(rows) - 1:
                if a.phase != "whole":
                    np.savez(OUT / f"{a.phase}_{ds}{tag}.npz", **{k: np.asarray(v) for k, v in rec.items() if len(v)})
                el = time.time() - t0
                print(f"{ds} {a.phase} {ci+1}/{len(rows)} clips, {n_pass} passes, {el:.0f}s, "
                      f"net {t_net/max(n_pass,1):.2f}s/pass, decode+prep {t_dec/(ci+1):.2f}s/clip", flush=True)
        out = {k: np.asarray(v) for k, v in rec.items() if len(v)}
        np.savez(OUT / f"{a.phase}_{ds}{tag}.npz", **out)
        print(f"saved {ds} {a.phase}: {len(rec['clip'])} rows, {time.time()-t0:.0f}s, net {t_net/max(n_pass,1):.2f}s/pass", flush=True)


if __name__ == "__main__":
    main()
