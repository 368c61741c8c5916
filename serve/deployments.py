"""Serve deployments: the batched frame backbone and the voting ensemble.

Both are stateless (state lives in the stream actors) and take uint8 frames or features, never float
frames, through the object store. Batch size and wait are read from the deployment's ``user_config`` in
:meth:`reconfigure`, so ``serve deploy`` with a changed config retunes them without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from nexara.config import BackboneServeConfig, EnsembleServeConfig
from nexara.errors import ModelError

logger = logging.getLogger("ray.serve")


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device cuda requested but torch sees no GPU")
    return device


def _frame_count(items: list[np.ndarray]) -> int:
    """Size of a backbone batch in frames (``max_batch_size`` counts frames, not requests)."""
    return sum(len(x) for x in items)


@serve.deployment(name="Backbone")
class BackboneDeployment:
    """One CNN for every camera: ``@serve.batch`` gathers the frame requests of all stream actors.

    A request is ``(n, H, W, 3)`` uint8 frames at the model input size; the reply is ``(n, D)`` float16
    features. Frames go to the device as uint8 and become float there (autocast on GPU).

    ``max_batch_size`` counts *frames* per forward pass: requests are gathered until the next one would
    pass it, and a request larger than it is split. On CPU a small batch is fastest (the batch-size
    sweep in README "Measured here", from ``benchmarks/bench_live.py``); on a GPU raise it. A
    request split just before ``reconfigure`` lowers the size may be refused by Serve's batcher; the
    stream actors retry it."""

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        weights: str | None = None,
        device: str = "auto",
        torch_threads: int = 1,
    ) -> None:
        import torch

        from nexara.backbones import create_backbone
        from nexara.model_manifest import read_manifest
        from nexara.voting import DEFAULT_MODEL_DIR

        torch.set_num_threads(torch_threads)
        self.manifest = read_manifest(Path(model_dir) if model_dir else DEFAULT_MODEL_DIR)
        self.device = _resolve_device(device)
        self.backbone = create_backbone(self.manifest.backbone, weights=weights, device=self.device)
        spec = replace(self.backbone.spec, resize=self.manifest.preprocessing.resize)
        if spec.hash() != self.manifest.preprocessing.hash:
            raise ModelError(
                f"model {self.manifest.version} expects preprocessing {self.manifest.preprocessing.hash}, "
                f"backbone {self.manifest.backbone} here has {spec.hash()}"
            )
        self.size_hw = tuple(self.manifest.preprocessing.size_hw)
        self._batches = 0
        self._frames = 0
        self._requests = 0
        self._busy_s = 0.0
        self._max_batch_frames = 0
        self._max_batch_requests = 0
        self._recent_batches: deque[int] = deque(maxlen=256)
        self._max_batch_size, self._batch_wait_timeout_s = 8, 0.02  # the decorator's until reconfigure runs

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batching = BackboneServeConfig.model_validate(user_config)  # the schema's defaults and bounds
        size, wait = batching.max_batch_size, batching.batch_wait_timeout_s
        self.embed.set_max_batch_size(size)  # type: ignore[attr-defined]
        self.embed.set_batch_wait_timeout_s(wait)  # type: ignore[attr-defined]
        self._max_batch_size, self._batch_wait_timeout_s = size, wait  # Serve's getters are private
        logger.info("backbone batching: max_batch_size=%d batch_wait_timeout_s=%.3f", size, wait)

    def _forward(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.backbone(frames).to(torch.float16).cpu().numpy()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02, batch_size_fn=_frame_count)
    async def embed(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [len(r) for r in requests]
        stacked = np.concatenate(requests, axis=0)
        t0 = time.perf_counter()
        feats = await asyncio.get_running_loop().run_in_executor(None, self._forward, stacked)
        self._busy_s += time.perf_counter() - t0
        self._batches += 1
        self._requests += len(requests)
        self._frames += len(stacked)
        self._max_batch_frames = max(self._max_batch_frames, len(stacked))
        self._max_batch_requests = max(self._max_batch_requests, len(requests))
        self._recent_batches.append(len(stacked))
        return list(np.split(feats, np.cumsum(sizes)[:-1]))

    async def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if (
            frames.ndim != 4
            or frames.dtype != np.uint8
            or tuple(frames.shape[1:3]) != self.size_hw
            or frames.shape[3] != 3
        ):
            raise ValueError(
                f"expected (n, {self.size_hw[0]}, {self.size_hw[1]}, 3) uint8 frames, got {frames.dtype} {frames.shape}"
            )
        if len(frames) == 0:
            return np.zeros((0, self.manifest.feature_dim), dtype=np.float16)
        step = self._max_batch_size
        if len(frames) <= step:
            return await self.embed(frames)
        parts = await asyncio.gather(*(self.embed(frames[i : i + step]) for i in range(0, len(frames), step)))
        return np.concatenate(parts)

    def stats(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "batches": self._batches,
            "requests": self._requests,
            "frames": self._frames,
            "mean_batch_frames": self._frames / self._batches if self._batches else 0.0,
            "busy_s": round(self._busy_s, 3),
            "max_batch_size": self._max_batch_size,
            "batch_wait_timeout_s": self._batch_wait_timeout_s,
            "max_batch_frames": self._max_batch_frames,
            "max_batch_requests": self._max_batch_requests,
            "recent_batch_frames": list(self._recent_batches),
            "feature_dim": self.manifest.feature_dim,
            "pid": os.getpid(),
        }


@serve.deployment(name="VotingEnsemble")
class VotingEnsembleDeployment:
    """The manifest's members, weights, temperature and threshold scoring one window per request.

    A request is ``(features (T, D), motion (K,) or None)``; the reply is the verdict dict of
    :func:`nexara.predict.verdict` (calibrated probability, decision, tier, member probabilities)."""

    def __init__(self, model_dir: str | None = None, *, vote: str = "manifest", vote_k: int | None = None) -> None:
        import torch

        from nexara.voting import DEFAULT_MODEL_DIR, EnsembleModel

        torch.set_num_threads(1)
        self.model = EnsembleModel(Path(model_dir) if model_dir else DEFAULT_MODEL_DIR, vote=vote, vote_k=vote_k)
        self._windows = 0

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batching = EnsembleServeConfig.model_validate(user_config)  # the schema's defaults and bounds
        self.score.set_max_batch_size(batching.max_batch_size)  # type: ignore[attr-defined]
        self.score.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def score(self, items: list[tuple[np.ndarray, np.ndarray | None]]) -> list[dict[str, Any]]:
        from nexara.predict import verdicts

        feats = np.stack([np.asarray(f, dtype=np.float32) for f, _ in items])
        motion = None
        if self.model.needs_motion:
            motion = np.stack([np.asarray(m, dtype=np.float32) for _, m in items])
        self._windows += len(items)
        return verdicts(self.model, feats, motion)

    async def __call__(self, feats: np.ndarray, motion: np.ndarray | None = None) -> dict[str, Any]:
        man = self.model.manifest
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[1] != man.feature_dim or len(feats) < 1:
            raise ValueError(f"expected features (T, {man.feature_dim}), got {feats.shape}")
        if self.model.needs_motion:
            dim = man.motion.dim if man.motion else 0
            if motion is None or np.asarray(motion).shape != (dim,):
                raise ValueError(f"model {man.version} needs a motion vector ({dim},)")
        return await self.score((feats, motion))

    def info(self) -> dict[str, Any]:
        man = self.model.manifest
        return {
            "version": man.version,
            "backbone": man.backbone,
            "frames_per_clip": man.frames_per_clip,
            "feature_dim": man.feature_dim,
            "preprocessing": man.preprocessing.model_dump(mode="json"),
            "motion": None if man.motion is None else man.motion.model_dump(mode="json"),
            "members": [{"name": m.name, "head": m.head_config.get("name"), "input": m.input} for m in man.members],
            "weights": list(man.weights),
            "temperature": man.temperature,
            "threshold": man.threshold,
            "tiers": dict(man.tiers),
            "vote": self.model.vote,
            "windows_scored": self._windows,
        }
