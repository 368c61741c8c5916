"""Training throughput: one member under Ray Train vs a plain PyTorch loop on the same features, and
N members in parallel (one Ray Train run each, concurrently) vs the same N runs in sequence.

    .venv/bin/python benchmarks/bench_training.py [--features runs/demo/features] [--epochs 10]

Needs a feature store (`make features`). Early stopping is off so both sides run the same epochs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nexara.config import load_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", default=str(REPO / "runs" / "demo" / "features"))
    ap.add_argument("--config")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument(
        "--member",
        default="motion_mlp",
        help="member timed alone: a member name of the config, or HEAD:INPUT for an extra member "
        "(e.g. stats:appearance, the appearance head of earlier default models)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray
    import torch

    from cluster.runtime import init_ray
    from training.cv import member_input
    from training.final import train_final
    from training.loop import train_member
    from training.pipeline import load_training_data

    cfg = load_config(args.config)
    inputs, y, _, _ = load_training_data(Path(args.features), cfg)
    members = {m.name: m for m in cfg.training.members}
    if args.member in members:
        member = members[args.member]
    elif ":" in args.member:
        from nexara.training_config import MemberConfig

        head, _, kind = args.member.partition(":")
        member = MemberConfig(name=f"{head}_{kind}", head=head, input=kind, motion=kind == "appearance")
    else:
        raise SystemExit(f"--member {args.member!r}: not a member of the config ({', '.join(members)}) nor HEAD:INPUT")
    member = member.model_copy(update={"epochs": args.epochs})
    tcfg = cfg.training.train.model_copy(update={"early_stopping_patience": None})
    x = member_input(inputs, member)
    n = len(y)

    torch.set_num_threads(cfg.training.torch_threads)
    t0 = time.perf_counter()
    train_member(x, y, x, y, member, tcfg)
    plain_s = time.perf_counter() - t0

    init_ray(cfg.ray)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.training.storage_path = tmp
        cfg.training.train = tcfg
        one = cfg.model_copy(deep=True)
        one.training.members = [member]
        t0 = time.perf_counter()
        train_final(inputs, y, one, epochs={member.name: args.epochs}, run_name="bench-one")
        ray_s = time.perf_counter() - t0

        epochs = {m: args.epochs for m in members}
        t0 = time.perf_counter()
        train_final(inputs, y, cfg, epochs=epochs, run_name="bench-par")
        par_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for m in cfg.training.members:
            single = cfg.model_copy(deep=True)
            single.training.members = [m]
            train_final(inputs, y, single, epochs=epochs, run_name=f"bench-seq-{m.name}")
        seq_s = time.perf_counter() - t0
    ray.shutdown()
    samples = n * args.epochs
    print(f"member {member.name}, {n} clips x {args.epochs} epochs, torch threads {cfg.training.torch_threads}")
    print(f"plain PyTorch loop      : {samples / plain_s:8.1f} samples/s ({plain_s:.1f} s)")
    print(f"Ray Train (1 worker)    : {samples / ray_s:8.1f} samples/s ({ray_s:.1f} s incl. trainer start-up)")
    print(f"ratio Ray Train / plain : {plain_s / ray_s:.2f}")
    print(f"{len(members)} members in parallel  : {par_s:.1f} s")
    print(f"{len(members)} members in sequence  : {seq_s:.1f} s")
    print(f"speed-up parallel/sequence: {seq_s / par_s:.2f}x")


if __name__ == "__main__":
    main()
