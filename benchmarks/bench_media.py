"""Throughput of nexara.media.sample_clip against a raw sequential PyAV decode of the same files.

    .venv/bin/python benchmarks/bench_media.py [--limit N] [--frames 16] [--size 224] [--threads 0]

Reads the shared CCTV clips (../shared/data/surveillance-fight, or $NEXARA_SHARED/data/...).
The raw loop decodes every frame of every file (no RGB conversion, no resize, same decoder
threading); sample_clip does its demux-only counting pass, one sequential decode, and RGB
conversion + resize of the T kept frames. A demux-only pass first warms the page cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nexara.media import ResizePolicy, sample_clip  # noqa: E402

SHARED = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")).resolve()
CLIPS_DIR = SHARED / "data" / "surveillance-fight"


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    seconds: float
    clips: int
    frames_out: int  # frames handed back (decoded frames for raw, T per clip for sample_clip)
    frames_decoded: int

    def line(self) -> str:
        return (
            f"{self.name:<12} {self.seconds:7.2f} s  {self.clips / self.seconds:7.2f} clips/s  "
            f"{self.frames_out / self.seconds:8.1f} frames out/s  "
            f"{self.frames_decoded / self.seconds:8.1f} frames decoded/s"
        )


def clip_paths(limit: int | None = None) -> list[Path]:
    paths = sorted(CLIPS_DIR.glob("*/*.mp4"))
    if not paths:
        raise SystemExit(f"no clips found under {CLIPS_DIR} (set NEXARA_SHARED)")
    return paths[:limit] if limit else paths


def warm_cache(paths: Sequence[Path]) -> float:
    """Demux-only pass over every file (page cache warm-up; also the cost of counting frames)."""
    t0 = time.perf_counter()
    for p in paths:
        with av.open(str(p)) as c:
            for _ in c.demux(c.streams.video[0]):
                pass
    return time.perf_counter() - t0


def raw_decode(paths: Sequence[Path], threads: int = 0) -> Run:
    """Decode every frame of every file with a plain PyAV loop (the floor sample_clip is measured against)."""
    frames = 0
    t0 = time.perf_counter()
    for p in paths:
        with av.open(str(p)) as c:
            stream = c.streams.video[0]
            if threads != 1:
                stream.codec_context.thread_type = "AUTO"
                stream.codec_context.thread_count = threads
            else:
                stream.codec_context.thread_count = 1
            for _ in c.decode(stream):
                frames += 1
    return Run("raw decode", time.perf_counter() - t0, len(paths), frames, frames)


def sampled(
    paths: Sequence[Path],
    num_frames: int = 16,
    size_hw: tuple[int, int] | None = (224, 224),
    resize: ResizePolicy = "squash",
    threads: int = 0,
) -> Run:
    out = decoded = 0
    t0 = time.perf_counter()
    for p in paths:
        clip = sample_clip(p, num_frames=num_frames, size_hw=size_hw, resize=resize, threads=threads)
        out += len(clip.frames)
        decoded += clip.decoded_frames
    return Run("sample_clip", time.perf_counter() - t0, len(paths), out, decoded)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N clips")
    ap.add_argument("--frames", type=int, default=16, help="T, frames per clip (default 16)")
    ap.add_argument("--size", type=int, default=224, help="square output size (default 224)")
    ap.add_argument("--resize", default="squash", choices=["squash", "letterbox", "center_crop"])
    ap.add_argument("--threads", type=int, default=0, help="decoder threads, 0 = FFmpeg auto (default)")
    ap.add_argument("--repeat", type=int, default=1, help="repeat both loops, report the best")
    args = ap.parse_args(argv)

    paths = clip_paths(args.limit)
    print(
        f"{len(paths)} clips from {CLIPS_DIR}; T={args.frames}, {args.size}x{args.size} {args.resize}, "
        f"threads={args.threads}, cpus={os.cpu_count()}, av {av.__version__}"
    )
    demux_s = warm_cache(paths)
    print(f"demux-only pass (frame counting): {demux_s:.2f} s, {1000 * demux_s / len(paths):.1f} ms/clip")
    raw = min((raw_decode(paths, args.threads) for _ in range(args.repeat)), key=lambda r: r.seconds)
    smp = min(
        (sampled(paths, args.frames, (args.size, args.size), args.resize, args.threads) for _ in range(args.repeat)),
        key=lambda r: r.seconds,
    )
    print(raw.line())
    print(smp.line())
    print(
        f"sample_clip time / raw decode time = {smp.seconds / raw.seconds:.2f}  "
        f"(clips/s ratio sample_clip/raw = {raw.seconds / smp.seconds:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
