"""Cost per 2-s window of the recipe parts on this CPU (torch 2 threads, channels_last_3d), on one VioPeru clip.

Usage: nice -n 19 ../../.venv/bin/python bench_recipe.py
"""
import time

import cv2
import numpy as np
import torch

from extract_i3d import DATA, decode, motion_crop_input, windows
from nexara.backbones.i3d import build_i3d, clip_to_input
from nexara.media import iter_frames
from nexara.motion import MotionSpec
from nexara.motion.clips import motion_from_gray

torch.set_num_threads(2)
path = DATA["vp"] / "fight/f100and.mp4"
frames, t = decode(path)
w = windows(t)[0]
sel = np.stack([frames[i] for i in w[2]])
m = build_i3d().eval().to(memory_format=torch.channels_last_3d)
cl = torch.channels_last_3d


def timeit(f, n=3):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n


with torch.inference_mode():
    xc = clip_to_input(sel)
    xm, _ = motion_crop_input(sel)
    r = {
        "preprocess centre crop (32 frames 640x360)": timeit(lambda: clip_to_input(sel)),
        "motion box + motion crop": timeit(lambda: motion_crop_input(sel)),
        "I3D 1 window (B=1)": timeit(lambda: m(xc.contiguous(memory_format=cl))),
        "I3D centre + motion crop (B=2, one batch)": timeit(lambda: m(torch.cat([xc, xm]).contiguous(memory_format=cl))),
        "I3D 5 crops (B=5) = top-5 multi-crop cost": timeit(lambda: m(torch.cat([xc] * 5).contiguous(memory_format=cl)), 1),
    }
S = MotionSpec()
g, tt = [], []
with iter_frames(str(path), fps=S.fps, size_hw=S.size_hw, resize="squash") as fr:
    for f in fr:
        g.append(cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY)); tt.append(f.time_s)
g, tt = np.stack(g)[:20], np.asarray(tt)[:20]
r["flow statistics, 2-s window (20 frames at 10 fps, Farneback + stats)"] = timeit(lambda: motion_from_gray(g, tt, S))
for k, v in r.items():
    print(f"| {k} | {v:.2f} s |")
