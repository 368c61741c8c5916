"""Serve deployments: the batched backbone and the voting ensemble, both on the model runtime
(:class:`nexara.runtime.ModelRuntime`: the manifest is checked there, once).

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
from typing import Any

import numpy as np
from ray import serve

from nexara.config import BackboneServeConfig, EnsembleServeConfig

logger = logging.getLogger("ray.serve")


def _frame_count(items: list[np.ndarray]) -> int:
    """Size of a backbone batch in frames (``max_batch_size`` counts frames, not requests)."""
    return sum(len(x) for x in items)


@serve.deployment(name="Backbone")
class BackboneDeployment:
    """One frame CNN for every camera: ``@serve.batch`` gathers the frame requests of all stream actors.

    A request is ``(n, H, W, 3)`` uint8 frames at the model input size; the reply is ``(n, D)`` float16
    features. Frames go to the device as uint8 and become float there (autocast on GPU). A model none of
    whose members reads frame features builds no CNN: its requests get ``(n, 0)`` features. (A model on a
    clip backbone is served by ``ClipBackbone``, :mod:`serve.clip_deployment`.)

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

        from nexara.runtime import ModelRuntime

        torch.set_num_threads(torch_threads)
        self.runtime = ModelRuntime.from_manifest(model_dir, device=device, weights=weights)
        self.manifest = self.runtime.manifest
        self.device = self.runtime.device
        if self.runtime.reads_frames:  # built now: a missing weights file fails the deployment, not a request
            self.runtime.frame_backbone  # noqa: B018
        self.feature_dim = self.manifest.feature_dim if self.runtime.reads_frames else 0
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
        return self.runtime.embed_frames(frames).astype(np.float16)

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
        # checked here, before batching: a bad request fails alone, not the batch it would have joined
        frames = self.runtime.check_frames(frames)
        if len(frames) == 0:
            return self._forward(frames)
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
            "feature_dim": self.feature_dim,
            "reads": sorted(self.runtime.reads),
            "built": list(self.runtime.built),
            "pid": os.getpid(),
        }


@serve.deployment(name="VotingEnsemble")
class VotingEnsembleDeployment:
    """The manifest's members, weights, temperature and threshold (or the ``serve.ensemble.vote`` override).

    ``__call__`` scores one window: ``(features (T, D), motion (K,) or None)`` (an input no member reads is
    ignored, any shape) -> the verdict dict of :func:`nexara.predict.verdicts` (calibrated probability,
    decision, tier, member probabilities). :meth:`score_clip` scores a clip's rows (one per window, or one
    for a whole-clip model) and returns the clip's verdict (:meth:`ModelRuntime.aggregate`)."""

    def __init__(self, model_dir: str | None = None, *, vote: str = "manifest", vote_k: int | None = None) -> None:
        import torch

        from nexara.runtime import ModelRuntime

        torch.set_num_threads(1)
        self.runtime = ModelRuntime.from_manifest(model_dir, device="cpu", vote=vote, vote_k=vote_k)
        self.model = self.runtime.model
        self._windows = 0

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batching = EnsembleServeConfig.model_validate(user_config)  # the schema's defaults and bounds
        self.score.set_max_batch_size(batching.max_batch_size)  # type: ignore[attr-defined]
        self.score.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def score(self, items: list[tuple[np.ndarray | None, np.ndarray | None]]) -> list[dict[str, Any]]:
        app = None if items[0][0] is None else np.concatenate([f for f, _ in items])  # type: ignore[misc]
        mot = None if items[0][1] is None else np.concatenate([m for _, m in items])  # type: ignore[misc]
        self._windows += len(items)
        return self.runtime.score(app, mot).verdicts()

    async def __call__(self, feats: np.ndarray | None, motion: np.ndarray | None = None) -> dict[str, Any]:
        # one window, checked alone (a bad one fails its request, not its batch); unread inputs dropped
        x = self.runtime.check_inputs(
            None if feats is None else np.asarray(feats)[None], None if motion is None else np.asarray(motion)[None]
        )
        return await self.score((x.appearance, x.motion))

    async def score_clip(self, feats: np.ndarray | None, motion: np.ndarray | None = None) -> dict[str, Any]:
        """A clip's verdict from its rows: ``feats`` ``(W, T, D)``, ``motion`` ``(W, K)`` (what members read)."""
        rows = self.runtime.score(feats, motion)
        self._windows += len(rows)
        return self.runtime.aggregate(rows).verdict(0)

    def info(self) -> dict[str, Any]:
        man = self.model.manifest
        return {
            "version": man.version,
            "backbone": man.backbone,
            "frames_per_clip": man.frames_per_clip,
            "feature_dim": man.feature_dim,
            "preprocessing": man.preprocessing.model_dump(mode="json"),
            "motion": None if man.motion is None else man.motion.model_dump(mode="json"),
            "clip": None if man.clip is None else man.clip.model_dump(mode="json"),
            "reads": sorted(self.runtime.reads),
            "members": [{"name": m.name, "head": m.head_config.get("name"), "input": m.input} for m in man.members],
            "weights": list(man.weights),
            "temperature": man.temperature,
            "threshold": man.threshold,
            "tiers": dict(man.tiers),
            "vote": self.model.vote,
            "windows_scored": self._windows,
        }
