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
        from training.batch_predict import predict_with_ray
        from training.runtime import ray_session

        with ray_session(cfg.ray):  # records stream out while the Ray instance is up
            rc = _emit_records(predict_with_ray(inputs, cfg, model_dir=args.model), args.format)
    else:
        predictor = Predictor(args.model, weights=cfg.model.weights, read_timeout_s=cfg.media.read_timeout_s)
        rc = _emit_records(predictor.predict_many(inputs), args.format)
    if rc:
        sys.stderr.write("nexara: some inputs could not be read (see the error records above)\n")
    return rc


# --- parser -------------------------------------------------------------------------------------


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
