"""``nexara dataset scan`` (labelled videos, or one CSV per dataset -> Parquet manifest), ``nexara dataset
from-reviews`` (reviewed live incidents -> a clips.csv dataset) and ``nexara features`` (Ray Data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nexara.cli.config import load_cfg
from nexara.errors import NexaraError


def cmd_dataset_scan(args: argparse.Namespace) -> int:
    from training.manifest import (
        CsvSource,
        balance_report,
        build_manifest,
        entries_from_csvs,
        entries_from_dir,
        write_manifest,
    )

    cfg = load_cfg(args)
    ds_cfg = cfg.dataset
    split = ds_cfg.split.model_copy(
        update={k: v for k, v in (("folds", args.folds), ("seed", args.seed)) if v is not None}
    )
    ds_cfg = ds_cfg.model_copy(update={"split": split})
    root = Path(args.dir) if args.dir else None
    if args.csv:
        entries = entries_from_csvs([CsvSource.parse(c, root=root) for c in args.csv], ds_cfg)
    elif args.dir:
        entries = entries_from_dir(Path(args.dir), ds_cfg, source_regex=args.source_regex)
    elif ds_cfg.sources:
        sources = [CsvSource(Path(s.csv), s.name, Path(s.root) if s.root else None) for s in ds_cfg.sources]
        entries = entries_from_csvs(sources, ds_cfg)
    else:
        raise NexaraError("dataset scan needs DIR or --csv FILE")
    table = build_manifest(entries, ds_cfg, timeout_s=cfg.media.read_timeout_s)
    write_manifest(table, Path(args.out))
    n_err = sum(e is not None for e in table.column("error").to_pylist())
    dupes = len(entries) - table.num_rows
    n_datasets = len(set(table.column("dataset").to_pylist()))
    sys.stdout.write(
        f"manifest: {args.out} ({table.num_rows} clips from {n_datasets} dataset(s), "
        f"{dupes} duplicate(s) dropped, {n_err} unreadable)\n"
    )
    sys.stdout.write(balance_report(table) + "\n")
    return 0


def cmd_dataset_from_reviews(args: argparse.Namespace) -> int:
    from actors.review_dataset import export_reviewed_clips

    cfg = load_cfg(args)
    result = export_reviewed_clips(args.run_dirs, Path(args.out), event_log=cfg.sinks.event_log)
    sys.stdout.write(
        f"dataset: {result.csv_path} ({result.total} clips: {result.written['fight']} fight (confirmed), "
        f"{result.written['noFight']} noFight hard negatives (dismissed); {len(result.skipped)} reviewed "
        f"incident(s) skipped)\n"
    )
    for line in result.skipped:
        sys.stdout.write(f"  skipped {line}\n")
    sys.stdout.write(
        f"next: nexara dataset scan --csv reviews={result.csv_path} [--csv OTHER.csv ...] --out m.parquet\n"
    )
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from training.features import extract_features

    cfg = load_cfg(args)
    if args.backbone:
        cfg.model.backbone = args.backbone
    stats = extract_features(Path(args.manifest), Path(args.out), cfg, limit=args.limit)
    sys.stdout.write(
        f"features: {args.out}: {stats.extracted} extracted, {stats.skipped} already stored, "
        f"{stats.failed} failed (see {Path(args.out) / '_errors.parquet'}); "
        f"{stats.clips_per_s:.2f} clips/s, {stats.frames_per_s:.1f} frames/s over {stats.wall_s:.1f} s\n"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("dataset", help="dataset manifests")
    dsub = d.add_subparsers(dest="dataset_command", required=True)
    sc = dsub.add_parser(
        "scan", help="folder of class sub-folders (or one --csv per dataset, or dataset.sources) -> Parquet manifest"
    )
    sc.add_argument("dir", nargs="?", help="root with class sub-folders (or the clip root for --csv)")
    sc.add_argument("--out", required=True, help="manifest .parquet to write")
    sc.add_argument(
        "--csv",
        action="append",
        metavar="[NAME=]FILE",
        help="clip,label,source[,hard_negative] CSV (clip paths relative to DIR or to the CSV); repeat for "
        "several datasets in one manifest (dataset NAME default: the CSV's folder name)",
    )
    sc.add_argument("--folds", type=int, help="k grouped folds instead of train/val/test fractions")
    sc.add_argument("--seed", type=int, help="split seed")
    sc.add_argument("--source-regex", help="regex on file names whose group 1 names the source recording")
    sc.set_defaults(func=cmd_dataset_scan)
    fr = dsub.add_parser(
        "from-reviews",
        help="reviewed incidents of live runs -> clips (cell crops) + clips.csv (confirmed: fight; dismissed: "
        "noFight hard negative; source: camera id)",
    )
    fr.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="live run folder(s) holding an event log")
    fr.add_argument("--out", required=True, help="dataset folder to write (clips/ and clips.csv)")
    fr.set_defaults(func=cmd_dataset_from_reviews)

    f = sub.add_parser("features", help="extract backbone features for a manifest with Ray Data")
    f.add_argument("manifest")
    f.add_argument("--out", required=True, help="feature store folder (Parquet dataset)")
    f.add_argument("--backbone", help="override model.backbone")
    f.add_argument("--limit", type=int, help="only the first N clips")
    f.set_defaults(func=cmd_features)
