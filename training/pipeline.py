"""`nexara evaluate` and `nexara train`: feature store -> grouped CV (per dataset, and leave one dataset
out) -> Ray Train -> model manifest.

With a frame backbone the rows are clips (the ``part-*`` feature store); with a clip backbone
(``model.backbone: i3d_kinetics400``) they are the 2-s windows of the clips (the window store), as the live
path scores them: each window carries its clip's label and source, so the grouped CV never splits a clip,
and the reports add clip-level figures (max and mean over a clip's windows)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cluster.runtime import ray_session
from nexara.backbones import backbone_kind, effective_clip_spec
from nexara.config import NexaraConfig
from nexara.errors import TrainingError
from training.clip_level import clip_groups
from training.cv import CVResult, cross_validate
from training.datasets import DatasetLabels, labels_from_manifest, leave_one_dataset_out, lodo_inner_folds
from training.export import export_model
from training.feature_store import StoreKey, effective_spec, load_features
from training.final import train_final
from training.loop import refit_epochs
from training.report import write_cv_report

log = logging.getLogger(__name__)


def is_clip_model(cfg: NexaraConfig) -> bool:
    """True when the configured backbone is a clip backbone: training reads the window store."""
    return backbone_kind(cfg.model.backbone) == "clip"


def load_window_inputs(features_dir: Path, cfg: NexaraConfig) -> tuple[dict[str, np.ndarray], Any]:
    """Inputs of every window stored under the configured clip backbone, clip spec and hop.

    ``appearance`` is the per-time features ``(N, T', D)``, not the pooled ``(N, D)``: the pooled vector is
    their mean over T', which the forest head takes itself (so it splits on exactly the pooled features),
    the probe adds the std over T', and the temporal heads and the mean+std+|diff| baseline need T'.
    ``motion`` is the window's optical-flow statistics ``(N, 1, M)`` when they were stored.
    """
    from training.window_store import WindowStoreKey, load_windows

    stored = load_windows(features_dir, key=WindowStoreKey.for_config(cfg))
    inputs = {"appearance": stored.per_time}
    if stored.motion is not None:  # stored when features.motion was on
        inputs["motion"] = stored.motion[:, None, :]
    return inputs, stored.meta


def load_training_data(
    features_dir: Path, cfg: NexaraConfig
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, Any]:
    """Inputs stored under the configured backbone / preprocessing / T / motion spec (clips), or under the
    configured clip backbone / clip spec / hop (windows), labels and sources per row."""
    if is_clip_model(cfg):
        inputs, meta = load_window_inputs(features_dir, cfg)
    else:
        stored = load_features(features_dir, key=StoreKey.for_config(cfg))
        inputs, meta = stored.inputs, stored.meta
    y = np.asarray(meta.column("label").to_pylist(), dtype=np.int64)
    groups = np.asarray(meta.column("source").to_pylist(), dtype=object)
    if len(np.unique(y)) < 2:
        raise TrainingError(f"{features_dir}: training needs both classes, found only label(s) {np.unique(y)}")
    return inputs, y, groups, meta


def default_manifest(features_dir: Path) -> Path | None:
    """``manifest.parquet`` beside the feature folder (the layout `make features` writes), if there."""
    candidate = features_dir.parent / "manifest.parquet"
    return candidate if candidate.is_file() else None


def load_dataset_labels(features_dir: Path, meta: Any, manifest: Path | None) -> DatasetLabels:
    manifest = manifest or default_manifest(features_dir)
    if manifest is not None:
        log.info("datasets and hard negatives from %s", manifest)
    return labels_from_manifest(meta, manifest)


@dataclass(frozen=True, slots=True)
class Evaluation:
    cv: CVResult
    y: np.ndarray
    labels: DatasetLabels
    lodo: CVResult | None  # leave one dataset out, when asked for


def run_lodo(inputs: dict[str, np.ndarray], y: np.ndarray, labels: DatasetLabels, cfg: NexaraConfig) -> CVResult:
    """Train on all datasets but one, score the held-out one: the nested CV with one fold per dataset."""
    folds, names = leave_one_dataset_out(labels)
    inner = lodo_inner_folds(labels, folds, cfg.training.inner_folds)
    return cross_validate(
        inputs,
        y,
        labels.sources,
        cfg,
        k=len(folds),
        seed=cfg.training.seed,
        folds=folds,
        fold_names=names,
        inner_folds=inner,
    )


def run_evaluate(
    features_dir: Path, out_dir: Path, cfg: NexaraConfig, *, k: int, lodo: bool = False, manifest: Path | None = None
) -> Evaluation:
    inputs, y, groups, meta = load_training_data(features_dir, cfg)  # before Ray: a bad path fails fast
    labels = load_dataset_labels(features_dir, meta, manifest)
    if lodo:
        leave_one_dataset_out(labels)  # fewer than 2 datasets fails before any work
    with ray_session(cfg.ray):
        cv = cross_validate(inputs, y, groups, cfg, k=k, seed=cfg.training.seed)
        lodo_cv = run_lodo(inputs, y, labels, cfg) if lodo else None
    title = f"NexaraVision grouped {k}-fold CV ({cfg.model.backbone} features)"
    write_cv_report(cv, y, out_dir, title=title, labels=labels, lodo=lodo_cv)
    return Evaluation(cv, y, labels, lodo_cv)


def run_train(
    features_dir: Path,
    out_dir: Path,
    cfg: NexaraConfig,
    *,
    k: int,
    version: str,
    report_dir: Path | None = None,
    dataset_manifest: Path | None = None,
) -> tuple[CVResult, Any]:
    """CV first (out-of-fold predictions calibrate the ensemble and pick each member's epochs), then every
    member on all clips with Ray Train, then export."""
    inputs, y, groups, meta = load_training_data(features_dir, cfg)  # before Ray: a bad path fails fast
    labels = load_dataset_labels(features_dir, meta, dataset_manifest)
    with ray_session(cfg.ray):
        cv = cross_validate(inputs, y, groups, cfg, k=k, seed=cfg.training.seed)
        write_cv_report(cv, y, report_dir or out_dir / "cv", title=f"CV of model {version}", labels=labels)
        epochs = {name: refit_epochs(e) for name, e in cv.best_epochs.items()}
        log.info("final epochs per member (median best epoch over folds): %s", epochs)
        trained = train_final(inputs, y, cfg, epochs=epochs, run_name=f"nexara-{version}")
    # counted per clip; a model on windows also says how many windows of each class it was fitted on
    first = np.arange(len(y)) if labels.clips is None else clip_groups(labels.clips)[0]
    training_data: dict[str, Any] = {
        "clips": len(first),
        "fight": int(y[first].sum()),
        "no_fight": int(len(first) - y[first].sum()),
        "sources": len(set(labels.sources)),
        "datasets": {n: int((labels.datasets[first] == n).sum()) for n in labels.names},
        "hard_negatives": int(labels.hard_negative[first].sum()),
        "features": str(features_dir),
        "epochs": epochs,
    }
    if labels.clips is not None:
        training_data["windows"] = {"total": len(y), "fight": int(y.sum()), "no_fight": int(len(y) - y.sum())}
    spec = effective_clip_spec(cfg).frame_spec() if is_clip_model(cfg) else effective_spec(cfg)
    manifest = export_model(
        out_dir,
        trained,
        cv,
        y,
        cfg,
        spec=spec,
        inputs=inputs,
        training_data=training_data,
        version=version,
        clips=labels.clips,
    )
    return cv, manifest
