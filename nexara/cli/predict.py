"""``nexara predict``: clip-level verdicts, in process for a few inputs, through Ray Data for many."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from nexara.cli.config import load_cfg
from nexara.errors import NexaraError


def _emit_records(records: Iterable[dict[str, Any]], fmt: str) -> int:
    """Print records as they arrive; 1 when any input failed."""
    rc = 0
    for rec in records:
        if "error" in rec:
            rc = 1
        if fmt == "jsonl":
            sys.stdout.write(json.dumps(rec) + "\n")
        elif "error" in rec:
            sys.stdout.write(f"{rec['path']}: ERROR {rec['error']}: {rec['reason']}\n")
        else:
            verdict = "VIOLENT" if rec["violent"] else "ok"
            sys.stdout.write(
                f"{rec['path']}: {verdict:<7} p={rec['violence_probability']:.3f} {rec['confidence']:<6} "
                f"({rec['frames_used']} frames, {rec['latency_ms']:.0f} ms)\n"
            )
        sys.stdout.flush()
    return rc


def cmd_predict(args: argparse.Namespace) -> int:
    from nexara.predict import Predictor, expand_inputs

    cfg = load_cfg(args)
    inputs = expand_inputs(args.inputs, cfg.dataset.extensions)
    if not inputs:
        raise NexaraError("no inputs: give video files or directories holding videos")
    if len(inputs) >= args.ray_threshold:
        from cluster.runtime import ray_session
        from training.batch_predict import predict_with_ray

        with ray_session(cfg.ray):  # records stream out while the Ray instance is up
            rc = _emit_records(predict_with_ray(inputs, cfg, model_dir=args.model), args.format)
    else:
        predictor = Predictor(
            args.model,
            device=cfg.model.device,
            weights=cfg.model.weights,
            read_timeout_s=cfg.media.read_timeout_s,
            max_decode_mb=cfg.media.max_decode_mb,
        )
        rc = _emit_records(predictor.predict_many(inputs), args.format)
    if rc:
        sys.stderr.write("nexara: some inputs could not be read (see the error records above)\n")
    return rc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pd = sub.add_parser("predict", help="violence probability for video files or directories")
    pd.add_argument("inputs", nargs="+")
    pd.add_argument("--model", help="model folder (default: the shipped model)")
    pd.add_argument("--format", choices=["jsonl", "text"], default="text")
    pd.add_argument("--ray-threshold", type=int, default=16, help="use Ray Data from this many inputs on")
    pd.set_defaults(func=cmd_predict)
