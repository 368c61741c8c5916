"""Many inputs through Ray Data: an actor pool of :class:`~nexara.predict.Predictor` (one model runtime per
actor: decode, embed with the backbone the members read, score), records streamed back in input order."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nexara.config import NexaraConfig


class PredictActor:
    """Callable class for ``Dataset.map``: ``{"path"}`` -> ``{"record"}`` (the JSON record of the path)."""

    def __init__(
        self,
        model_dir: str | None,
        weights: str | None,
        device: str,
        threads: int,
        timeout_s: float,
        max_decode_mb: float,
    ) -> None:
        import torch

        from nexara.predict import Predictor

        torch.set_num_threads(threads)
        self.predictor = Predictor(
            model_dir, device=device, weights=weights, read_timeout_s=timeout_s, max_decode_mb=max_decode_mb
        )

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        # JSON keeps the records' nested members and nulls out of Arrow's schema inference
        return {"record": json.dumps(self.predictor.predict_source(str(row["path"])))}


def predict_with_ray(
    inputs: list[str], cfg: NexaraConfig, *, model_dir: str | Path | None = None
) -> Iterator[dict[str, Any]]:
    """Records of ``inputs`` (same as ``Predictor.predict_many``, in input order) from a pool of predictor
    actors: ``features.model_actors`` at least, one per CPU of the instance otherwise (decoding and the
    motion statistics are CPU work that the actors share), each with ``features.torch_threads``."""
    import ray

    fc = cfg.features
    gpus = fc.model_num_gpus
    cpus = max(1.0, float(ray.available_resources().get("CPU", 1.0)))
    actors = max(1, min(len(inputs), max(fc.model_actors, math.floor(cpus / fc.model_num_cpus))))
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    items = ray.data.from_items([{"path": p} for p in inputs], override_num_blocks=max(1, len(inputs)))
    ds = items.map(
        PredictActor,  # type: ignore[arg-type]  # a callable class: Ray Data builds one per actor
        fn_constructor_kwargs={
            "model_dir": None if model_dir is None else str(model_dir),
            "weights": cfg.model.weights,
            "device": cfg.model.device if gpus > 0 else "cpu",
            "threads": fc.torch_threads,
            "timeout_s": cfg.media.read_timeout_s,
            "max_decode_mb": cfg.media.max_decode_mb,
        },
        num_cpus=fc.model_num_cpus,
        num_gpus=gpus or None,
        compute=ray.data.ActorPoolStrategy(size=actors),
    )
    for row in ds.iter_rows():
        yield json.loads(row["record"])
