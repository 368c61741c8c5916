"""Export of a trained ensemble: members, weights fitted on the out-of-fold predictions, temperature,
threshold, tiers and the backbone's preprocessing into a model manifest folder.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nexara.config import NexaraConfig
from nexara.metrics import apply_temperature, classification_report, logit, soft_vote
from nexara.model_manifest import (
    MemberEntry,
    ModelManifest,
    MotionEntry,
    PreprocessingEntry,
    sha256_file,
    write_manifest,
)
from training.cv import CVResult, fit_calibration

# the metrics of each model the manifest's cv_metrics keep
_REPORTED = ("accuracy", "roc_auc", "pr_auc", "f1", "precision", "recall", "fpr", "ece")


def export_model(
    out_dir: Path,
    trained: dict[str, dict[str, Any]],
    cv: CVResult,
    y: np.ndarray,
    cfg: NexaraConfig,
    *,
    spec: Any,
    inputs: dict[str, np.ndarray],
    training_data: dict[str, Any],
    version: str,
) -> ModelManifest:
    sec = cfg.training
    by_name = {m.name: m for m in sec.members}
    motion_entry = None
    if any(by_name[n].input == "motion" for n in cv.member_names):
        from nexara.motion import MOTION_VERSION, MotionSpec

        motion_entry = MotionEntry(
            version=MOTION_VERSION, hash=MotionSpec().hash(), dim=int(inputs["motion"].shape[-1])
        )
    weights, temperature, threshold = fit_calibration(cv.oof_member_probs, y, sec)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in cv.member_names:
        wf = out_dir / f"{name}.pt"
        torch.save(trained[name]["state_dict"], wf)
        entries.append(
            MemberEntry(
                name=name,
                head_config=trained[name]["head_config"],
                weights_file=wf.name,
                sha256=sha256_file(wf),
                input=by_name[name].input,
            )
        )
    cv_metrics = {name: {k: v for k, v in s["metrics"].items() if k in _REPORTED} for name, s in cv.summary.items()}
    manifest = ModelManifest(
        version=version,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        backbone=cfg.model.backbone,
        preprocessing=PreprocessingEntry(**spec.to_dict(), hash=spec.hash()),
        frames_per_clip=cfg.media.frames_per_clip,
        feature_dim=int(inputs["appearance"].shape[-1]),
        motion=motion_entry,
        members=entries,
        vote="soft",
        weights=[float(w) for w in weights],
        temperature=float(temperature),
        threshold=float(threshold),
        tiers=dict(sec.tiers),
        training_data=training_data,
        cv_metrics={
            "k": cv.k,
            "oof_ensemble": classification_report(
                y, apply_temperature(logit(soft_vote(cv.oof_member_probs, weights)), temperature), threshold
            ),
            "per_model": cv_metrics,
        },
    )
    write_manifest(manifest, out_dir)
    return manifest
