"""Many inputs through Ray Data: decode tasks + backbone actor pool, then the ensemble in the driver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nexara.config import NexaraConfig
from nexara.model_manifest import feature_config
from nexara.voting import DEFAULT_MODEL_DIR, EnsembleModel
from training.features import build_pipeline


def predict_with_ray(
    inputs: list[str], cfg: NexaraConfig, *, model_dir: str | Path | None = None
) -> Iterator[dict[str, Any]]:
    import ray

    from nexara.predict import make_record

    model = EnsembleModel(model_dir or DEFAULT_MODEL_DIR)
    fc = feature_config(model.manifest)
    # the pipeline reads T, the backbone and the resize policy from the config: the model's, not the config's
    cfg = cfg.model_copy(deep=True)
    cfg.model.backbone = fc.backbone
    cfg.media.frames_per_clip = fc.frames_per_clip
    cfg.media.resize = fc.resize
    items = [
        {"path": p, "content_hash": "", "label": -1, "source": "", "split": "", "duration_s": None} for p in inputs
    ]
    ds = build_pipeline(items, cfg, model.spec, backbone=fc.backbone, motion=fc.needs_motion)
    # records come out in input order, like the single-process path
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    t_last = time.perf_counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        now = time.perf_counter()
        share = (now - t_last) / max(1, len(batch["path"]))  # wall time per clip of this batch
        t_last = now
        for i in range(len(batch["path"])):
            path = str(batch["path"][i])
            if str(batch["error"][i]):
                yield {"path": path, "error": str(batch["error_code"][i]), "reason": str(batch["error"][i])}
                continue
            feats = np.asarray(batch["features"][i], dtype=np.float32)
            times = np.asarray(batch["times_s"][i])
            yield make_record(
                model,
                path,
                feats,
                frames_used=len(feats),
                duration_s=float(times[-1]) if len(times) else None,
                latency_s=share,
                motion=np.asarray(batch["motion"][i], dtype=np.float32) if fc.needs_motion else None,
            )
