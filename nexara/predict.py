"""Clip-level prediction: video -> the model runtime (:mod:`nexara.runtime`: decode, embed, score,
aggregate) -> a JSON-able record.

No Ray here: one input pays only for the members and the backbone they read (none for a motion-only
model). ``training.batch_predict`` runs many inputs through Ray Data on the same :class:`Predictor`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nexara.clip_decode import DEFAULT_MAX_DECODE_MB
from nexara.errors import MediaError, NexaraError
from nexara.model_manifest import FeatureConfig
from nexara.runtime import ClipScore, ModelRuntime, score_members
from nexara.voting import EnsembleModel

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


def verdicts(model: EnsembleModel, feats: np.ndarray | None, motion: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Score ``(N, T, D)`` features (and ``(N, K)`` motion; only what the members read is needed): one verdict
    dict per row, the shared part of a CLI record, an HTTP reply and a live window's score."""
    return score_members(model, feats, motion).verdicts()


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
    """A loaded model (manifest folder) on its :class:`~nexara.runtime.ModelRuntime`: records for inputs."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: str = "auto",
        weights: str | None = None,
        read_timeout_s: float = 10.0,
        max_decode_mb: float = DEFAULT_MAX_DECODE_MB,
    ) -> None:
        self.runtime = ModelRuntime.from_manifest(model_dir, device=device, weights=weights)
        self.read_timeout_s = read_timeout_s
        self.max_decode_mb = max_decode_mb

    @property
    def model(self) -> EnsembleModel:
        return self.runtime.model

    @property
    def feature_config(self) -> FeatureConfig:
        return self.runtime.feature_config

    def score(self, source: str | bytes) -> ClipScore:
        """One input scored; MediaError (or another NexaraError) for an unreadable one."""
        return self.runtime.predict(source, timeout_s=self.read_timeout_s, max_decode_mb=self.max_decode_mb)

    def predict_source(self, source: str | bytes, *, label: str | None = None) -> dict[str, Any]:
        """One input -> record, or ``{"path", "error", "reason"}`` for an unreadable one (never raises)."""
        name = label or (source if isinstance(source, str) else "<upload>")
        t0 = time.perf_counter()
        try:
            scored = self.score(source)
        except MediaError as exc:
            return {"path": name, "error": exc.code, "reason": exc.reason}
        except NexaraError as exc:
            return {"path": name, "error": exc.code, "reason": str(exc)}
        return clip_record(
            name,
            scored.verdict(),
            frames_used=scored.frames_used,
            duration_s=scored.duration_s,
            latency_s=time.perf_counter() - t0,
        )

    def predict_many(self, sources: Iterable[str]) -> Iterator[dict[str, Any]]:
        for s in sources:
            yield self.predict_source(s)
