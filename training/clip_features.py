"""Feature extraction for clip backbones on Ray Data: decode tasks cut each clip into windows of T frames
(:func:`nexara.media.sample_windows`, as the run's :class:`~nexara.backbones.ClipSpec` says), a clip
backbone actor pool turns windows into pooled and per-time features, and the rows stream into the window
store (:mod:`training.window_store`). :func:`training.features.extract_features` lands here when
``model.backbone`` is a clip backbone; a rerun skips every clip whose windows are all stored.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nexara.backbones import ClipSpec, effective_clip_spec
from nexara.config import NexaraConfig
from nexara.errors import MediaError
from training.feature_store import ERROR_SCHEMA, ERRORS_FILE, write_atomic
from training.window_store import (
    CLIP_COLUMNS,
    WINDOW_PREFIX,
    WindowStoreKey,
    stored_clips,
    window_rows,
)

log = logging.getLogger(__name__)

_WINDOW_COLUMNS = ("window_index", "num_windows", "start_s", "end_s", "times_s", "corrupt_packets", "error")


def _window_count(duration_s: float | None, spec: ClipSpec, hop_s: float) -> int:
    """Windows a clip of ``duration_s`` gives (as :func:`nexara.media.window_indices` cuts it), about."""
    if not duration_s or duration_s <= spec.window_s:
        return 1
    return int((duration_s - spec.window_s) // hop_s) + 1


class DecodeWindows:
    """Callable for ``Dataset.flat_map``: one manifest row -> one row per window (uint8 frames
    ``(T, H, W, 3)`` at the spec's decode size, and the window's flow statistics when ``features.motion``),
    or one error row (``window_index`` -1)."""

    def __init__(self, cfg: NexaraConfig, spec: ClipSpec) -> None:
        self.spec = spec
        self.motion = cfg.features.motion
        self.hop_s = cfg.features.window_hop_s
        self.timeout_s = cfg.media.read_timeout_s
        # decoded windows of one clip are held at once: the long-video frame budget bounds them
        self.max_frames = cfg.media.max_frames_long_video

    def _failed(self, out: dict[str, Any], reason: str) -> list[dict[str, Any]]:
        h, w = self.spec.decode_size_hw
        return [
            {
                **out,
                "window_index": -1,
                "num_windows": 0,
                "start_s": 0.0,
                "end_s": 0.0,
                "frames": np.zeros((0, h, w, 3), np.uint8),
                "times_s": np.zeros(0, np.float32),
                "motion": np.zeros(0, np.float32),
                "corrupt_packets": 0,
                "error": reason,
            }
        ]

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        from nexara.media import sample_windows  # imported in the worker
        from nexara.motion import window_motion

        spec = self.spec
        out = {k: row[k] for k in CLIP_COLUMNS}
        expected = _window_count(row.get("duration_s"), spec, self.hop_s)
        if expected * spec.num_frames > self.max_frames:
            return self._failed(
                out,
                f"{expected} windows of {spec.num_frames} frames exceed media.max_frames_long_video "
                f"({self.max_frames}); cut the video into shorter clips",
            )
        try:
            w = sample_windows(
                row["path"],
                window_s=spec.window_s,
                hop_s=self.hop_s,
                num_frames=spec.num_frames,
                size_hw=spec.decode_size_hw,
                resize=spec.crop,
                timeout_s=self.timeout_s,
            )
            bounds = list(zip(w.start_s.tolist(), w.end_s.tolist(), strict=True))
            motion = window_motion(row["path"], bounds, timeout_s=self.timeout_s) if self.motion else None
        except MediaError as exc:
            return self._failed(out, exc.reason)
        except Exception as exc:
            log.exception("unexpected decode failure for %s", row["path"])
            return self._failed(out, f"unexpected decode failure: {type(exc).__name__}: {exc}")
        n = len(w.frames)
        return [
            {
                **out,
                "window_index": i,
                "num_windows": n,
                "start_s": float(w.start_s[i]),
                "end_s": float(w.end_s[i]),
                "frames": w.frames[i],
                "times_s": w.times_s[i].astype(np.float32),
                "corrupt_packets": int(w.corrupt_packets),
                "motion": motion[i] if motion is not None else np.zeros(0, np.float32),
                "error": "",
            }
            for i in range(n)
        ]


class ClipBackboneActor:
    """Callable class for ``map_batches``: batches of windows -> pooled ``(D,)`` and per-time ``(T', D)``
    features per window, float16."""

    def __init__(self, backbone: str, spec: dict[str, Any], weights: str | None, device: str, threads: int) -> None:
        import torch

        from nexara.backbones import create_clip_backbone

        torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = create_clip_backbone(backbone, spec=ClipSpec.from_dict(spec), weights=weights, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        n = len(batch["path"])
        ok = [i for i in range(n) if not batch["error"][i]]
        dim = self.model.feature_dim
        pooled = np.empty(n, dtype=object)
        per_time = np.empty(n, dtype=object)
        for i in range(n):
            pooled[i], per_time[i] = np.zeros(0, np.float16), np.zeros((0, dim), np.float16)
        if ok:
            with torch.inference_mode():
                feats = self.model(np.stack([batch["frames"][i] for i in ok]))
            p = feats.pooled.cpu().numpy().astype(np.float16)
            pt = feats.per_time.cpu().numpy().astype(np.float16)
            for j, i in enumerate(ok):
                pooled[i], per_time[i] = p[j], pt[j]
        result = {k: batch[k] for k in (*CLIP_COLUMNS, *_WINDOW_COLUMNS, "motion")}
        result["features"] = pooled
        result["per_time"] = per_time
        return result


def build_window_pipeline(items: list[dict[str, Any]], cfg: NexaraConfig, spec: ClipSpec) -> Any:
    """Ray Data: window decoding in CPU tasks, the clip backbone in an actor pool. The two stages keep
    their own CPU shares (``features.decode_num_cpus`` / ``model_num_cpus``, which the config keeps
    different so Ray Data does not fuse them)."""
    import ray

    fc = cfg.features
    blocks = max(1, math.ceil(len(items) / fc.clips_per_block))
    items_ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = items_ds.flat_map(DecodeWindows(cfg, spec), num_cpus=fc.decode_num_cpus)
    return ds.map_batches(
        ClipBackboneActor,
        fn_constructor_kwargs={
            "backbone": cfg.model.backbone,
            "spec": spec.to_dict(),
            "weights": cfg.model.weights,
            "device": cfg.model.device if fc.model_num_gpus > 0 else "cpu",
            "threads": fc.torch_threads,
        },
        # features.batch_size counts frames: a batch holds that many frames' worth of windows
        batch_size=max(1, fc.batch_size // spec.num_frames),
        num_cpus=fc.model_num_cpus,
        num_gpus=fc.model_num_gpus or None,
        compute=ray.data.ActorPoolStrategy(size=fc.model_actors),
        batch_format="numpy",
    )


def extract_window_features(
    rows: list[dict[str, Any]], out_dir: Path, cfg: NexaraConfig
) -> tuple[int, int, int, int, list[dict[str, str]]]:
    """Windows of every readable manifest row not stored yet under this run's key.

    Returns (clips extracted, windows, frames, clips skipped as already stored, failures incl. scan errors).
    """
    spec = effective_clip_spec(cfg)
    key = WindowStoreKey.for_config(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = stored_clips(out_dir, key)
    errors = [{"path": r["path"], "reason": r["error"], "stage": "scan"} for r in rows if r.get("error")]
    todo = [r for r in rows if not r.get("error") and r["content_hash"] not in done]
    skipped = sum(1 for r in rows if not r.get("error") and r["content_hash"] in done)
    log.info(
        "%d clips: %d already stored, %d to cut into windows (%s, hop %g s), %d unreadable at scan",
        len(rows),
        skipped,
        len(todo),
        spec.describe(),
        key.window_hop_s,
        len(errors),
    )
    clips: set[str] = set()
    windows = 0
    if todo:
        from cluster.runtime import ray_session

        items = [{k: r[k] for k in (*CLIP_COLUMNS, "duration_s")} for r in todo]
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with ray_session(cfg.ray):  # only when there is work: a rerun that skips everything stays instant
            t0 = time.perf_counter()
            ds = build_window_pipeline(items, cfg, spec)
            for part, batch in enumerate(ds.iter_batches(batch_size=None, batch_format="numpy")):
                tbl, errs = window_rows(batch, key)
                errors.extend(errs)
                if tbl.num_rows:
                    write_atomic(tbl, out_dir / f"{WINDOW_PREFIX}{run_id}-{part:05d}.parquet")
                    windows += tbl.num_rows
                    clips.update(tbl.column("content_hash").to_pylist())
                elapsed = time.perf_counter() - t0
                log.info("features: %d windows of %d clips, %.2f windows/s", windows, len(clips), windows / elapsed)
    write_atomic(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA), out_dir / ERRORS_FILE)
    return len(clips), windows, windows * spec.num_frames, skipped, errors
