"""The batched clip-backbone deployment: a model on a clip backbone scores windows, not frames.

``@serve.batch`` gathers windows (``(T, H, W, 3)`` uint8 at the clip spec's decode size, T =
``num_frames``) from every camera into one forward pass and answers each with the backbone's per-time
features ``(T', D)`` float16 (what the model's appearance members read). The backbone does the rest of
the preprocessing (centre crop, the motion view of a motion-crop recipe, value range), in NDHWC layout on
CPU and under float16 autocast on CUDA (:class:`nexara.backbones.ClipBackbone`). Batch size and wait come
from ``user_config`` in :meth:`reconfigure` (``serve.clip``), so ``serve deploy`` retunes them without a
restart. The clip spec is checked against the manifest's at start-up: a model is never served windows cut
or embedded otherwise than it was trained on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from nexara.config.live import ClipServeConfig
from nexara.errors import ModelError

logger = logging.getLogger("ray.serve")


class ClipEmbedder:
    """The clip backbone of a model, from its one runtime (:class:`nexara.runtime.ModelRuntime`: the
    manifest and clip spec checked once): windows in, per-time features out. Shared by the deployment
    and the benchmark's plain loop."""

    def __init__(self, model_dir: str | Path, *, weights: str | None = None, device: str = "auto") -> None:
        from nexara.runtime import ModelRuntime

        self.runtime = ModelRuntime.from_manifest(model_dir, device=device, weights=weights)
        spec = self.runtime.feature_config.clip
        if spec is None or not self.runtime.reads_windows:
            raise ModelError(
                f"model {self.runtime.manifest.version} reads no clip backbone features: it is served by the "
                "Backbone deployment (frame features) or by the stream actors alone (motion), not ClipBackbone"
            )
        self.spec = spec
        self.device = self.runtime.device
        self.window_shape = (spec.num_frames, *spec.decode_size_hw, 3)
        self.runtime.clip_backbone  # noqa: B018  (built now, not on the first request)

    def check(self, window: Any) -> np.ndarray:
        """A request as a ``(T, H, W, 3)`` uint8 array, or a clear error naming what was expected."""
        arr = np.asarray(window)
        if arr.dtype != np.uint8 or arr.shape != self.window_shape:
            raise ValueError(
                f"expected a window of shape {self.window_shape} uint8 (clip spec {self.spec.describe()}), "
                f"got {arr.dtype} {arr.shape}"
            )
        return arr

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """``(N, T, H, W, 3)`` uint8 -> per-time features ``(N, T', D)`` float16."""
        return self.runtime.embed_windows(windows).per_time.astype(np.float16)


@serve.deployment(name="ClipBackbone")
class ClipBackboneDeployment:
    """One clip backbone for every camera (see the module docstring). ``max_batch_size`` counts windows."""

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        weights: str | None = None,
        device: str = "auto",
        torch_threads: int = 1,
    ) -> None:
        import torch

        from nexara.voting import DEFAULT_MODEL_DIR

        torch.set_num_threads(torch_threads)
        self.model = ClipEmbedder(Path(model_dir) if model_dir else DEFAULT_MODEL_DIR, weights=weights, device=device)
        self._batches = 0
        self._windows = 0
        self._busy_s = 0.0
        self._max_batch = 0
        self._max_batch_size, self._batch_wait_timeout_s = 2, 0.05  # the decorator's until reconfigure runs

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        batching = ClipServeConfig.model_validate(user_config)  # the schema's defaults and bounds
        size, wait = batching.max_batch_size, batching.batch_wait_timeout_s
        self.embed.set_max_batch_size(size)  # type: ignore[attr-defined]
        self.embed.set_batch_wait_timeout_s(wait)  # type: ignore[attr-defined]
        self._max_batch_size, self._batch_wait_timeout_s = size, wait  # Serve's getters are private
        logger.info("clip backbone batching: max_batch_size=%d windows, batch_wait_timeout_s=%.3f", size, wait)

    @serve.batch(max_batch_size=2, batch_wait_timeout_s=0.05)
    async def embed(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        stacked = np.stack(windows)
        t0 = time.perf_counter()
        feats = await asyncio.get_running_loop().run_in_executor(None, self.model, stacked)
        self._busy_s += time.perf_counter() - t0
        self._batches += 1
        self._windows += len(windows)
        self._max_batch = max(self._max_batch, len(windows))
        return list(feats)

    async def __call__(self, window: np.ndarray) -> np.ndarray:
        """One window ``(T, H, W, 3)`` uint8 -> its per-time features ``(T', D)`` float16."""
        return await self.embed(self.model.check(window))

    def stats(self) -> dict[str, Any]:
        return {
            "device": self.model.device,
            "clip_spec": self.model.spec.describe(),
            "batches": self._batches,
            "windows": self._windows,
            "mean_batch_windows": self._windows / self._batches if self._batches else 0.0,
            "max_batch_windows": self._max_batch,
            "busy_s": round(self._busy_s, 3),
            "max_batch_size": self._max_batch_size,
            "batch_wait_timeout_s": self._batch_wait_timeout_s,
            "pid": os.getpid(),
        }
