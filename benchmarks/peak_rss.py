"""Run a command and report the peak summed RSS of its whole process tree (Ray workers included).

.venv/bin/python benchmarks/peak_rss.py -- .venv/bin/nexara features m.parquet --out feats
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: peak_rss.py -- COMMAND...", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    print(f"peak RSS of the process tree: {peak / 2**20:.0f} MiB; wall {wall:.1f} s; exit {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
