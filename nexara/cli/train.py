"""``nexara evaluate`` (grouped CV report) and ``nexara train`` (CV, Ray Train, model manifest)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nexara.cli.config import load_cfg


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.pipeline import run_evaluate
    from training.report import console_summary

    cfg = load_cfg(args)
    k = args.cv or cfg.training.cv_folds
    manifest = Path(args.manifest) if args.manifest else None
    ev = run_evaluate(Path(args.features), Path(args.out), cfg, k=k, lodo=args.lodo, manifest=manifest)
    sys.stdout.write(console_summary(ev.cv, ev.y, ev.labels, ev.lodo))
    wall_s = ev.cv.wall_s + (ev.lodo.wall_s if ev.lodo is not None else 0.0)
    sys.stdout.write(f"report: {Path(args.out) / 'report.md'} (wall {wall_s:.0f} s)\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.pipeline import run_train
    from training.report import cv_table

    cfg = load_cfg(args)
    if args.storage:
        cfg.training.storage_path = args.storage
    k = args.cv or cfg.training.cv_folds
    version = args.version or time.strftime("%Y%m%d-%H%M%S")
    dataset_manifest = Path(args.manifest) if args.manifest else None
    cv, manifest = run_train(
        Path(args.features), Path(args.out), cfg, k=k, version=version, dataset_manifest=dataset_manifest
    )
    sys.stdout.write(cv_table(cv) + "\n")
    sys.stdout.write(
        f"model {manifest.version}: {Path(args.out)} ({len(manifest.members)} members, threshold "
        f"{manifest.threshold:.3f}, temperature {manifest.temperature:.2f})\n"
    )
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from training.finetune import BACKBONE_FILE, REPORT_FILE, run_finetune

    cfg = load_cfg(args)
    if args.storage:
        cfg.training.storage_path = args.storage
    out = Path(args.out)
    report = run_finetune(Path(args.manifest), out, cfg, cv=not args.no_cv, final=not args.no_final)
    for name, m in report.per_dataset.items():
        sys.stdout.write(
            f"{name}: {m['clips']} clips / {m['windows']} windows out of fold: clip AUC {m['clip_auc']:.3f} "
            f"acc {m['clip_accuracy']:.3f}, window AUC {m['window_auc']:.3f}\n"
        )
    if report.final_wall_s is not None:
        sys.stdout.write(f"fine-tuned backbone: {out / BACKBONE_FILE} (use it as model.weights)\n")
    sys.stdout.write(f"report: {out / REPORT_FILE}\n")
    return 0


_MANIFEST_HELP = (
    "dataset manifest the features came from, for per-dataset metrics and hard negatives "
    "(default: manifest.parquet beside the feature folder, if there)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("evaluate", help="grouped K-fold CV of every member, the ensemble and the baseline")
    ev.add_argument("features", help="feature store folder from `nexara features`")
    ev.add_argument("--cv", type=int, help="K (default training.cv_folds)")
    ev.add_argument("--out", default="runs/evaluate", help="report folder (report.md/json + PNG plots)")
    ev.add_argument(
        "--lodo",
        action="store_true",
        help="also leave one dataset out: train on all datasets but one, score the held-out one",
    )
    ev.add_argument("--manifest", help=_MANIFEST_HELP)
    ev.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("train", help="CV, then Ray Train every member on all clips, then export a model")
    tr.add_argument("features", help="feature store folder from `nexara features`")
    tr.add_argument("--out", required=True, help="model folder to write (manifest.json + member weights)")
    tr.add_argument("--cv", type=int, help="K of the CV that calibrates the ensemble (default training.cv_folds)")
    tr.add_argument("--storage", help="Ray Train storage path (local folder or cloud URI)")
    tr.add_argument("--version", help="model version string (default: a timestamp)")
    tr.add_argument("--manifest", help=_MANIFEST_HELP)
    tr.set_defaults(func=cmd_train)

    ft = sub.add_parser(
        "finetune",
        help="fine-tune the clip backbone's last blocks with a head under Ray Train (grouped CV, then all clips)",
    )
    ft.add_argument("manifest", help="dataset manifest from `nexara dataset scan --folds K` (clips, labels, folds)")
    ft.add_argument("--out", required=True, help="folder for backbone.pt, head.pt, finetune.json")
    ft.add_argument("--storage", help="Ray Train storage path (local folder or cloud URI)")
    ft.add_argument("--no-cv", action="store_true", help="skip the grouped CV (fit on all clips only)")
    ft.add_argument("--no-final", action="store_true", help="grouped CV only (no fit on all clips)")
    ft.set_defaults(func=cmd_finetune)
