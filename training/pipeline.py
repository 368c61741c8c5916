"""`nexara evaluate` and `nexara train`: feature store -> grouped CV -> Ray Train -> model manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cluster.runtime import ray_session
from nexara.config import NexaraConfig
from nexara.errors import TrainingError
from training.cv import CVResult, cross_validate
from training.export import export_model
from training.feature_store import StoreKey, effective_spec, load_features
from training.final import train_final
from training.loop import refit_epochs
from training.report import write_cv_report

log = logging.getLogger(__name__)


def load_training_data(
    features_dir: Path, cfg: NexaraConfig
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, Any]:
    """Inputs stored under the configured backbone / preprocessing / T / motion spec, labels and sources."""
    stored = load_features(features_dir, key=StoreKey.for_config(cfg))
    meta = stored.meta
    y = np.asarray(meta.column("label").to_pylist(), dtype=np.int64)
    groups = np.asarray(meta.column("source").to_pylist(), dtype=object)
    if len(np.unique(y)) < 2:
        raise TrainingError(f"{features_dir}: training needs both classes, found only label(s) {np.unique(y)}")
    return stored.inputs, y, groups, meta


def run_evaluate(features_dir: Path, out_dir: Path, cfg: NexaraConfig, *, k: int) -> CVResult:
    inputs, y, groups, _ = load_training_data(features_dir, cfg)  # before Ray: a bad path fails fast
    with ray_session(cfg.ray):
        cv = cross_validate(inputs, y, groups, cfg, k=k, seed=cfg.training.seed)
    write_cv_report(cv, y, out_dir, title=f"NexaraVision grouped {k}-fold CV ({cfg.model.backbone} features)")
    return cv


def run_train(
    features_dir: Path, out_dir: Path, cfg: NexaraConfig, *, k: int, version: str, report_dir: Path | None = None
) -> tuple[CVResult, Any]:
    """CV first (out-of-fold predictions calibrate the ensemble and pick each member's epochs), then every
    member on all clips with Ray Train, then export."""
    inputs, y, groups, meta = load_training_data(features_dir, cfg)  # before Ray: a bad path fails fast
    with ray_session(cfg.ray):
        cv = cross_validate(inputs, y, groups, cfg, k=k, seed=cfg.training.seed)
        write_cv_report(cv, y, report_dir or out_dir / "cv", title=f"CV of model {version}")
        epochs = {name: refit_epochs(e) for name, e in cv.best_epochs.items()}
        log.info("final epochs per member (median best epoch over folds): %s", epochs)
        trained = train_final(inputs, y, cfg, epochs=epochs, run_name=f"nexara-{version}")
    sources = meta.column("source").to_pylist()
    training_data = {
        "clips": len(y),
        "fight": int(y.sum()),
        "no_fight": int(len(y) - y.sum()),
        "sources": len(set(sources)),
        "features": str(features_dir),
        "epochs": epochs,
    }
    manifest = export_model(
        out_dir,
        trained,
        cv,
        y,
        cfg,
        spec=effective_spec(cfg),
        inputs=inputs,
        training_data=training_data,
        version=version,
    )
    return cv, manifest
