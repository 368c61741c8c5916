"""The clip-model deployment (``ClipBackbone``, :mod:`serve.clip_deployment`) against a plain PyTorch loop over
the same clip backbone, on a private local Ray instance, CPU.

Windows are real: cut from shared CCTV clips as training cuts them (:func:`nexara.media.sample_windows`
at the clip spec's decode size). The deployment is fed by ``2 x max_batch_size`` concurrent callers, one
window per request shipped through the object store as a stream actor ships it; the plain loop calls the
same backbone (:class:`serve.clip_deployment.ClipEmbedder`: the model runtime's clip backbone, NDHWC on
CPU) in this process with the same torch threads. Both sides run in alternating rounds (this shared
machine's speed drifts by tens of percent over minutes), first at the batch the deployment formed, then
the plain loop is swept over batch sizes and the deployment is compared with the plain loop's best batch.

    nice -n 10 .venv/bin/python benchmarks/bench_clip_deployment.py [--frames 32 --crop 224] [--rounds 3]

The clip model is a throwaway manifest on ``i3d_kinetics400`` with the chosen spec (the members do not
matter here: only the backbone runs); the I3D weights come from the cache ``make setup`` fills.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")).resolve()
CLIPS = SHARED / "data" / "surveillance-fight"


def write_clip_model(folder: Path, spec: Any) -> Path:
    """A model manifest on ``i3d_kinetics400`` with clip spec ``spec`` and one (untrained) probe member."""
    import torch

    from nexara.backbones.i3d import I3D_KINETICS400
    from nexara.heads import create_head
    from nexara.model_manifest import (
        ClipPreprocessingEntry,
        MemberEntry,
        ModelManifest,
        PreprocessingEntry,
        write_manifest,
    )

    folder.mkdir(parents=True, exist_ok=True)
    head_config = {"name": "probe", "input_dim": 1024, "motion": False, "kwargs": {"hidden": 0, "dropout": 0.0}}
    torch.manual_seed(0)
    torch.save(create_head(**head_config).state_dict(), folder / "i3d_probe.pt")
    digest = hashlib.sha256((folder / "i3d_probe.pt").read_bytes()).hexdigest()
    frame = spec.frame_spec()
    manifest = ModelManifest(
        version="bench-clip",
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        backbone=I3D_KINETICS400,
        preprocessing=PreprocessingEntry(**frame.to_dict(), hash=frame.hash()),
        frames_per_clip=spec.num_frames,
        feature_dim=1024,
        clip=ClipPreprocessingEntry.from_spec(spec),
        members=[MemberEntry(name="i3d_probe", head_config=head_config, weights_file="i3d_probe.pt", sha256=digest)],
        weights=[1.0],
        temperature=1.0,
        threshold=0.5,
    )
    return write_manifest(manifest, folder).parent


def real_windows(spec: Any, n: int) -> np.ndarray:
    """``n`` windows of real shared clips, cut and sampled as training samples them."""
    from nexara.media import sample_windows

    with open(CLIPS / "clips.csv", newline="") as f:
        paths = [CLIPS / r["clip"] for r in csv.DictReader(f)]
    out: list[np.ndarray] = []
    for p in paths:
        w = sample_windows(
            p, window_s=spec.window_s, hop_s=1.0, num_frames=spec.num_frames, size_hw=spec.decode_size_hw,
            resize="center_crop",
        )  # fmt: skip
        out.extend(w.frames)
        if len(out) >= n:
            break
    return np.stack(out[:n])


def plain_loop(model: Any, windows: np.ndarray, batch: int, seconds: float) -> float:
    """Windows/s of the clip backbone called in a plain loop in this process."""
    done, i = 0, 0
    model(windows[:batch])  # warm-up
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model(windows[[(i + k) % len(windows) for k in range(batch)]])
        done += batch
        i += batch
    return done / (time.perf_counter() - t0)


async def deployment_rate(handle: Any, windows: np.ndarray, clients: int, seconds: float) -> dict[str, float]:
    import ray

    stats = handle.options(method_name="stats")
    refs = [ray.put(w) for w in windows]  # a stream actor ships each window through the object store
    await handle.remote(refs[0])  # warm-up
    before = await stats.remote()
    stop = time.perf_counter() + seconds
    count = 0

    async def client(k: int) -> None:
        nonlocal count
        j = k
        while time.perf_counter() < stop:
            await handle.remote(refs[j % len(refs)])
            count += 1
            j += clients

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    after = await stats.remote()
    batches = after["batches"] - before["batches"]
    return {
        "windows_per_s": count / wall,
        "mean_batch_windows": (after["windows"] - before["windows"]) / max(batches, 1),
        "busy_fraction": (after["busy_s"] - before["busy_s"]) / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--frames", type=int, default=None, help="T (default: the I3D profile's, 32)")
    ap.add_argument("--crop", type=int, default=None, help="crop px (default: the profile's, 224)")
    ap.add_argument("--batch", type=int, default=None, help="deployment max_batch_size (default: serve.clip's)")
    ap.add_argument("--round-s", type=float, default=20.0, help="seconds of each side per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sweep", default="1,2,4", help="plain-loop batch sizes tried for its best batch")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench_clip"))
    ap.add_argument("--out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (CLIPS / "clips.csv").is_file():
        sys.exit(f"shared clips not found at {CLIPS} (set NEXARA_SHARED)")

    import ray
    import torch
    from ray import serve

    from cluster.runtime import init_ray
    from nexara.backbones import effective_clip_spec
    from nexara.backbones.i3d import I3D_KINETICS400
    from nexara.config import load_config
    from serve.clip_deployment import ClipBackboneDeployment, ClipEmbedder

    cfg = load_config(args.config)
    overrides = {"backbone": I3D_KINETICS400, "frames_per_window": args.frames, "crop_px": args.crop}
    # the run's clip spec as training makes it (the profile, T and crop overrides, sides scaled alike)
    spec = effective_clip_spec(cfg.model_copy(update={"model": cfg.model.model_copy(update=overrides)}))
    clip_cfg = cfg.serve.clip
    batch = args.batch or clip_cfg.max_batch_size
    threads = clip_cfg.torch_threads
    model_dir = write_clip_model(Path(args.work) / "model", spec)
    windows = real_windows(spec, 16)
    print(f"clip spec: {spec.describe()}; {len(windows)} real windows; torch threads {threads}", flush=True)

    torch.set_num_threads(threads)
    plain = ClipEmbedder(model_dir, device="cpu")
    init_ray(cfg.ray, log_to_driver=False)
    app = ClipBackboneDeployment.options(
        ray_actor_options={"num_cpus": clip_cfg.num_cpus},
        max_ongoing_requests=max(clip_cfg.max_ongoing_requests, 2 * batch),
        user_config={"max_batch_size": batch, "batch_wait_timeout_s": clip_cfg.batch_wait_timeout_s},
    ).bind(str(model_dir), device="cpu", torch_threads=threads)
    handle = serve.run(app, name="bench-clip", route_prefix=None)
    clients = 2 * batch

    deps, plains, formed, busy = [], [], [], []
    for r in range(args.rounds):
        dep = asyncio.run(deployment_rate(handle, windows, clients, args.round_s))
        b = max(1, round(dep["mean_batch_windows"]))
        p = plain_loop(plain, windows, b, args.round_s)
        deps.append(dep["windows_per_s"])
        plains.append(p)
        formed.append(dep["mean_batch_windows"])
        busy.append(dep["busy_fraction"])
        print(f"round {r + 1}: deployment {dep['windows_per_s']:.3f} w/s (batch {dep['mean_batch_windows']:.2f}), "
              f"plain loop at batch {b}: {p:.3f} w/s, ratio {dep['windows_per_s'] / p:.3f}", flush=True)  # fmt: skip
    sweep = {b: plain_loop(plain, windows, b, args.round_s) for b in (int(x) for x in args.sweep.split(","))}
    best_batch = max(sweep, key=lambda b: sweep[b])
    # the deployment once more, then the plain loop at its best batch: the last pair under the same load
    dep_last = asyncio.run(deployment_rate(handle, windows, clients, args.round_s))["windows_per_s"]
    best_last = plain_loop(plain, windows, best_batch, args.round_s)
    dep_w, plain_w = float(np.median(deps)), float(np.median(plains))
    result = {
        "clip_spec": spec.describe(),
        "torch_threads": threads,
        "deployment_max_batch_size": batch,
        "concurrent_requests": clients,
        "deployment_windows_per_s": round(dep_w, 3),
        "deployment_mean_batch_windows": round(float(np.mean(formed)), 2),
        "deployment_busy_fraction": round(float(np.mean(busy)), 3),
        "plain_windows_per_s_same_batch": round(plain_w, 3),
        "ratio_same_batch": round(dep_w / plain_w, 3),
        "ratios_per_round": [round(d / p, 3) for d, p in zip(deps, plains, strict=True)],
        "plain_windows_per_s_by_batch": {b: round(v, 3) for b, v in sweep.items()},
        "plain_best_batch": best_batch,
        "ratio_best_batch": round(dep_last / best_last, 3),
        "best_batch_pair": {"deployment": round(dep_last, 3), "plain": round(best_last, 3)},
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    same = result["deployment_mean_batch_windows"]
    print(
        f"ClipBackbone deployment vs plain loop at the same batch ({same} windows): {dep_w:.3f} vs {plain_w:.3f} "
        f"windows/s, ratio {result['ratio_same_batch']} (rounds {result['ratios_per_round']})"
    )
    print(
        f"vs the plain loop's best batch ({best_batch}; sweep {result['plain_windows_per_s_by_batch']}): "
        f"{dep_last:.3f} vs {best_last:.3f} windows/s, ratio {result['ratio_best_batch']}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
