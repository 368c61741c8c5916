"""Clip-level prediction: video -> T sampled frames -> backbone -> voting ensemble -> a JSON-able record.

No Ray here: one input pays only for loading the backbone and the heads. ``training.batch_predict``
runs many inputs through Ray Data and reuses :func:`make_record`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nexara.backbones import Backbone, create_backbone
from nexara.errors import MediaError, NexaraError
from nexara.model_manifest import FeatureConfig, feature_config
from nexara.voting import DEFAULT_MODEL_DIR, EnsembleModel

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ts", ".flv", ".wmv")


def expand_inputs(inputs: Iterable[str], extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[str]:
    """Directories expand (recursively, sorted) to their video files; anything else is kept as given."""
    exts = {e.lower() for e in extensions}
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            if not found:
                log.warning("%s: directory holds no video files (%s)", p, ", ".join(sorted(exts)))
            out.extend(found)
        else:
            out.append(item)
    return out


def verdicts(model: EnsembleModel, feats: np.ndarray, motion: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Score ``(N, T, D)`` features (and ``(N, K)`` motion): one verdict dict per row, the shared part of
    a CLI record, an HTTP reply and a live window's score."""
    out = model.predict(feats, None if motion is None else np.asarray(motion, dtype=np.float32))
    return [
        {
            "violence_probability": round(float(out.probability[i]), 6),
            "violent": bool(out.violent[i]),
            "confidence": str(out.confidence[i]),
            "threshold": model.manifest.threshold,
            "members": {n: round(float(p), 6) for n, p in zip(model.names, out.member_probs[i], strict=True)},
            "model_version": model.manifest.version,
        }
        for i in range(len(out.probability))
    ]


def make_record(
    model: EnsembleModel,
    path: str,
    feats: np.ndarray,
    *,
    frames_used: int,
    duration_s: float | None,
    latency_s: float,
    motion: np.ndarray | None = None,
) -> dict[str, Any]:
    """The JSON record of one scored clip (same shape for the CLI and the HTTP API)."""
    v = verdicts(model, feats[None], None if motion is None else np.asarray(motion, dtype=np.float32)[None])[0]
    return clip_record(path, v, frames_used=frames_used, duration_s=duration_s, latency_s=latency_s)


def clip_record(
    path: str, verdict: dict[str, Any], *, frames_used: int, duration_s: float | None, latency_s: float
) -> dict[str, Any]:
    """A verdict plus what the clip was: the record of ``nexara predict`` and ``POST /v1/predict``."""
    return {
        "path": path,
        **verdict,
        "frames_used": int(frames_used),
        "duration_s": None if duration_s is None else round(float(duration_s), 3),
        "latency_ms": round(latency_s * 1000, 1),
    }


class Predictor:
    """A loaded model (manifest folder) and the backbone it was trained on."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: str = "cpu",
        weights: str | None = None,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.model = EnsembleModel(model_dir or DEFAULT_MODEL_DIR, device=device)
        #: how this model's inputs are computed (checked against this build's motion statistics)
        self.feature_config: FeatureConfig = feature_config(self.model.manifest)
        self.backbone: Backbone = create_backbone(self.feature_config.backbone, weights=weights, device=device)
        self.feature_config.check_backbone(self.backbone.name, self.backbone.spec)
        self.read_timeout_s = read_timeout_s

    @property
    def frames_per_clip(self) -> int:
        return self.feature_config.frames_per_clip

    def features(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.backbone(frames).float().cpu().numpy()

    def predict_source(self, source: str | bytes, *, label: str | None = None) -> dict[str, Any]:
        """One input -> record, or ``{"path", "error", "reason"}`` for an unreadable one (never raises)."""
        from nexara.media import sample_clip

        name = label or (source if isinstance(source, str) else "<upload>")
        t0 = time.perf_counter()
        fc = self.feature_config
        try:
            clip = sample_clip(
                source,
                num_frames=fc.frames_per_clip,
                size_hw=fc.size_hw,
                resize=fc.resize,
                timeout_s=self.read_timeout_s,
            )
            motion = None
            if fc.needs_motion:
                from nexara.motion import clip_motion

                motion = clip_motion(source, timeout_s=self.read_timeout_s)
        except MediaError as exc:
            return {"path": name, "error": exc.code, "reason": exc.reason}
        except NexaraError as exc:
            return {"path": name, "error": exc.code, "reason": str(exc)}
        feats = self.features(clip.frames)
        return make_record(
            self.model,
            name,
            feats,
            frames_used=len(clip.frames),
            duration_s=clip.info.duration_s,
            latency_s=time.perf_counter() - t0,
            motion=motion,
        )

    def predict_many(self, sources: Iterable[str]) -> Iterator[dict[str, Any]]:
        for s in sources:
            yield self.predict_source(s)
