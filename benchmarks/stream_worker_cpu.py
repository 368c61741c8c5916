"""CPU cost of the per-source live logic (decode, motion, windows, voting; no backbone: features are
zeros), in-process, on one video read as fast as possible. Prints CPU seconds per stream second.

    .venv/bin/python benchmarks/stream_worker_cpu.py VIDEO
    .venv/bin/py-spy record -f raw -o prof.txt -- .venv/bin/python benchmarks/stream_worker_cpu.py VIDEO

(``bench_live.py`` writes its camera videos to ``runs/bench_live/camera-*.mp4``.)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.sources import SourceConfig
from actors.stream import LiveModel, SourceWorker
from nexara.config import WindowsConfig
from nexara.predict import verdicts
from nexara.voting import DEFAULT_MODEL_DIR, EnsembleModel


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_file():
        sys.exit("usage: stream_worker_cpu.py VIDEO (an existing video file)")
    model = EnsembleModel(DEFAULT_MODEL_DIR)
    dim = model.manifest.feature_dim

    async def embed(frames: np.ndarray) -> np.ndarray:
        return np.zeros((len(frames), dim), np.float32)

    async def vote(feats: np.ndarray, motion: np.ndarray | None) -> dict:
        return verdicts(model, feats[None], None if motion is None else motion[None])[0]

    worker = SourceWorker(
        "bench",
        SourceConfig(url=sys.argv[1], pacing="fast"),
        model=LiveModel.from_manifest(model.manifest),
        embed=embed,
        vote=vote,
        windows=WindowsConfig(alert_stride_s=1.0),
    )

    async def run() -> None:
        worker.start()
        await worker.wait(3600)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    asyncio.run(run())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    st = worker.status().to_dict()
    print(
        f"{st['stream_time_s']:.1f} s of stream, {st['cells'][0]['windows_scored']} windows: {cpu:.1f} s CPU, "
        f"{wall:.1f} s wall -> {cpu / st['stream_time_s']:.3f} CPU s per stream s"
    )


if __name__ == "__main__":
    main()
