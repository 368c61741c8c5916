"""Cost of the motion statistics (nexara.motion.clip_motion) per clip, against decoding the same frames
(iter_frames at the same fps and size, gray conversion left out) measured in the same run.

    .venv/bin/python benchmarks/bench_motion.py [--clips 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nexara.media import iter_frames  # noqa: E402
from nexara.motion import MotionSpec, clip_motion  # noqa: E402

CLIPS = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")) / "data" / "surveillance-fight"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=20)
    args = ap.parse_args()
    half = args.clips // 2
    paths = sorted((CLIPS / "fight").glob("*.mp4"))[:half] + sorted((CLIPS / "noFight").glob("*.mp4"))[:half]
    spec = MotionSpec()
    clip_motion(paths[0])  # warm-up (cv2 import)
    t0 = time.process_time()
    frames = 0
    for p in paths:
        with iter_frames(p, fps=spec.fps, size_hw=spec.size_hw) as it:
            frames += sum(1 for _ in it)
    decode_s = time.process_time() - t0
    t0 = time.process_time()
    for p in paths:
        clip_motion(p, spec=spec)
    motion_s = time.process_time() - t0
    n = len(paths)
    print(f"{n} clips, {frames} frames at {spec.fps:g} fps, {spec.size_hw[1]}x{spec.size_hw[0]} (CPU time)")
    print(f"decode only   : {1000 * decode_s / n:7.1f} ms/clip")
    print(f"clip_motion   : {1000 * motion_s / n:7.1f} ms/clip")
    print(f"ratio motion / decode: {motion_s / decode_s:.1f}")


if __name__ == "__main__":
    main()
