"""Export of a trained ensemble: members, weights fitted on the out-of-fold predictions, temperature,
threshold, tiers and the backbone's preprocessing into a model manifest folder. A model on a clip backbone
also records its clip spec, the training windows' hop and the clip-level aggregation; its weights,
temperature and threshold are fitted on the window-level out-of-fold predictions (windows are what the
live path scores). Features made with ``model.weights`` (a fine-tuned backbone from ``nexara finetune``) put
that weights file in the model folder too, so every runtime builds the backbone the members were trained on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from nexara.backbones import backbone_kind, effective_clip_spec
from nexara.config import NexaraConfig
from nexara.metrics import apply_temperature, classification_report, logit, soft_vote
from nexara.model_manifest import (
    BackboneWeightsEntry,
    ClipPreprocessingEntry,
    MemberEntry,
    ModelManifest,
    MotionEntry,
    PreprocessingEntry,
    sha256_file,
    write_manifest,
)
from training.clip_level import aggregate_windows, clip_groups
from training.cv import CVResult, fit_calibration

# the metrics of each model the manifest's cv_metrics keep
_REPORTED = ("accuracy", "roc_auc", "pr_auc", "f1", "precision", "recall", "fpr", "ece")
# how a clip's score is made of its windows' in the live path: it alerts when any window does
CLIP_AGGREGATION: Literal["max", "mean"] = "max"


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
    clips: np.ndarray | None = None,
) -> ModelManifest:
    """``clips``: the clip of every row when the rows are windows (adds clip-level OOF metrics)."""
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
    backbone_weights = None
    if cfg.model.weights:  # features made with other weights than the stock ones: the model carries them
        import shutil

        src = Path(cfg.model.weights).expanduser()
        dst = out_dir / f"backbone{src.suffix or '.pt'}"
        shutil.copyfile(src, dst)
        backbone_weights = BackboneWeightsEntry(file=dst.name, sha256=sha256_file(dst))
    cv_metrics = {name: {k: v for k, v in s["metrics"].items() if k in _REPORTED} for name, s in cv.summary.items()}
    oof = apply_temperature(logit(soft_vote(cv.oof_member_probs, weights)), temperature)
    clip_entry, hop_s, aggregation, clip_metrics = None, None, None, {}
    if backbone_kind(cfg.model.backbone) == "clip":
        clip_entry = ClipPreprocessingEntry.from_spec(effective_clip_spec(cfg))
        hop_s, aggregation = float(cfg.features.window_hop_s), CLIP_AGGREGATION
        if clips is not None:
            first, inverse = clip_groups(clips)
            p_clip = aggregate_windows(oof, inverse, len(first), CLIP_AGGREGATION)
            clip_metrics[f"oof_ensemble_clips_{CLIP_AGGREGATION}"] = classification_report(y[first], p_clip, threshold)
    manifest = ModelManifest(
        version=version,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        backbone=cfg.model.backbone,
        preprocessing=PreprocessingEntry(**spec.to_dict(), hash=spec.hash()),
        frames_per_clip=clip_entry.num_frames if clip_entry else cfg.media.frames_per_clip,
        feature_dim=int(inputs["appearance"].shape[-1]),
        motion=motion_entry,
        clip=clip_entry,
        window_hop_s=hop_s,
        clip_aggregation=aggregation,
        backbone_weights=backbone_weights,
        members=entries,
        vote="soft",
        weights=[float(w) for w in weights],
        temperature=float(temperature),
        threshold=float(threshold),
        tiers=dict(sec.tiers),
        training_data=training_data,
        cv_metrics={
            "k": cv.k,
            "oof_ensemble": classification_report(y, oof, threshold),
            **clip_metrics,
            "per_model": cv_metrics,
        },
    )
    write_manifest(manifest, out_dir)
    return manifest
