"""Ray Data feature extraction vs a plain single-process PyTorch loop, in one run, on the shared clips.

Both paths decode + sample T frames per clip with nexara.media.sample_clip and run the same backbone with
the same frame batch size and the same total torch threads. Prints frames/s of each and the ratio.

    .venv/bin/python benchmarks/bench_features.py [--clips N] [--config ray_config.yaml]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nexara.config import load_config  # noqa: E402


def plain_loop(paths: list[str], cfg, threads: int) -> tuple[int, float]:
    import torch

    from nexara.backbones import create_backbone
    from nexara.media import sample_clip
    from training.features import effective_spec

    torch.set_num_threads(threads)
    spec = effective_spec(cfg)
    model = create_backbone(cfg.model.backbone, device="cpu")
    bs = cfg.features.batch_size
    t0 = time.perf_counter()
    frames = 0
    pending: list[np.ndarray] = []
    with torch.inference_mode():
        for p in paths:
            clip = sample_clip(p, num_frames=cfg.media.frames_per_clip, size_hw=spec.size_hw, resize=spec.resize)
            pending.append(clip.frames)
            frames += len(clip.frames)
            stacked = np.concatenate(pending)
            while len(stacked) >= bs:
                model(stacked[:bs])
                stacked = stacked[bs:]
            pending = [stacked] if len(stacked) else []
        if pending:
            model(np.concatenate(pending))
    return frames, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=230)
    ap.add_argument("--config")
    ap.add_argument("--motion", action="store_true", help="also compute motion statistics in the Ray pipeline")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config)
    cfg.features.motion = args.motion  # the plain loop computes CNN features only: compare like with like
    import pyarrow.parquet as pq

    from cluster.runtime import init_ray
    from training.features import extract_features
    from training.manifest import build_manifest, entries_from_csv, write_manifest

    csv_path = Path(args.shared) / "data" / "surveillance-fight" / "clips.csv"
    with tempfile.TemporaryDirectory() as tmp:
        entries = entries_from_csv(csv_path, cfg.dataset)[: args.clips]
        manifest = Path(tmp) / "m.parquet"
        write_manifest(build_manifest(entries, cfg.dataset), manifest)
        paths = pq.read_table(manifest).column("path").to_pylist()
        total_threads = cfg.features.torch_threads * cfg.features.model_actors

        frames_plain, wall_plain = plain_loop(paths, cfg, total_threads)
        init_ray(cfg.ray)
        stats = extract_features(manifest, Path(tmp) / "feat", cfg)
        import ray

        ray.shutdown()
    fps_plain = frames_plain / wall_plain
    print(
        f"clips: {len(paths)}  T={cfg.media.frames_per_clip}  backbone={cfg.model.backbone}  "
        f"batch={cfg.features.batch_size}  torch threads={total_threads}"
    )
    print(f"plain single-process loop : {fps_plain:7.1f} frames/s  ({wall_plain:.1f} s)")
    print(
        f"Ray Data pipeline         : {stats.frames_per_s:7.1f} frames/s  ({stats.wall_s:.1f} s incl. actor start, "
        f"{stats.clips_per_s:.2f} clips/s)"
    )
    print(f"ratio Ray Data / plain    : {stats.frames_per_s / fps_plain:.2f}")
    print(f"driver peak RSS           : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
