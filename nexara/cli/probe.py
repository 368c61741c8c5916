"""``nexara probe`` (video metadata) and ``nexara backbones`` (the registered frame and clip backbones)."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from nexara.errors import MediaError
    from nexara.media import probe

    rc = 0
    for src in args.sources:
        try:
            info = probe(src, timeout_s=args.timeout)
            sys.stdout.write(json.dumps({"path": src, **asdict(info)}) + "\n")
        except MediaError as exc:
            sys.stdout.write(json.dumps({"path": src, "error": exc.code, "reason": exc.reason}) + "\n")
            rc = 1
    return rc


def cmd_backbones(args: argparse.Namespace) -> int:
    from nexara.backbones import get_clip_spec, get_spec, list_backbones

    for name in list_backbones("frame"):
        spec = get_spec(name)
        sys.stdout.write(
            f"{name:<22} frame  input {spec.size_hw[0]}x{spec.size_hw[1]} {spec.resize:<11} spec {spec.hash()}\n"
        )
    for name in list_backbones("clip"):
        clip = get_clip_spec(name)
        sys.stdout.write(f"{name:<22} clip   {clip.describe()}  spec {clip.hash()}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pr = sub.add_parser("probe", help="print video metadata as JSON lines")
    pr.add_argument("sources", nargs="+")
    pr.add_argument("--timeout", type=float, default=10.0)
    pr.set_defaults(func=cmd_probe)

    b = sub.add_parser("backbones", help="list registered backbones (frame and clip) and their spec hashes")
    b.set_defaults(func=cmd_backbones)
