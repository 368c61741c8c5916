"""Feature extraction on Ray Data: decode + sample clips (and their motion statistics) in CPU tasks, run the
backbone in an actor pool, and stream the results into the feature store (:mod:`training.feature_store`,
which documents the layout); a rerun skips every clip already stored under the same key. A clip backbone
(``model.backbone`` of kind ``"clip"``) goes through :mod:`training.clip_features` instead: one row per
window of each clip.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nexara.backbones import PreprocessSpec, backbone_kind
from nexara.config import NexaraConfig
from nexara.errors import ConfigError, MediaError
from training.feature_store import (
    ERROR_SCHEMA,
    ERRORS_FILE,
    StoreKey,
    effective_spec,
    feature_rows,
    stored_keys,
    write_atomic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeatureRunStats:
    total: int
    skipped: int
    extracted: int
    failed: int
    frames: int
    wall_s: float
    windows: int = 0  # windows stored (clip backbones; frame backbones store whole clips)

    @property
    def clips_per_s(self) -> float:
        return self.extracted / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


# --- stage 1: decode (Ray Data CPU task) --------------------------------------------------------


def frames_for(duration_s: float | None, cfg: NexaraConfig) -> int:
    """T even frames for a clip; for long videos the analysis rate decides, capped."""
    m = cfg.media
    if duration_s is not None and duration_s > m.long_video_s:
        return int(min(m.max_frames_long_video, max(m.frames_per_clip, math.ceil(duration_s * m.analysis_fps))))
    return m.frames_per_clip


class DecodeClip:
    """Callable for ``Dataset.map``: one manifest row -> the row plus uint8 frames, or an error."""

    def __init__(self, cfg: NexaraConfig, spec: PreprocessSpec, *, motion: bool | None = None) -> None:
        self.cfg = cfg
        self.spec = spec
        self.motion = cfg.features.motion if motion is None else motion

    def _failed(self, out: dict[str, Any], reason: str, code: str) -> dict[str, Any]:
        h, w = self.spec.size_hw
        return {
            **out,
            "frames": np.zeros((0, h, w, 3), np.uint8),
            "times_s": np.zeros(0, np.float32),
            "motion": np.zeros(0, np.float32),
            "corrupt_packets": 0,
            "error": reason,
            "error_code": code,
        }

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from nexara.media import sample_clip  # imported in the worker

        h, w = self.spec.size_hw
        t = frames_for(row.get("duration_s"), self.cfg)
        out = {k: row[k] for k in ("path", "content_hash", "label", "source", "split")}
        try:
            clip = sample_clip(
                row["path"],
                num_frames=t,
                size_hw=(h, w),
                resize=self.spec.resize,
                timeout_s=self.cfg.media.read_timeout_s,
            )
            motion = np.zeros(0, np.float32)
            if self.motion:
                from nexara.motion import clip_motion

                motion = clip_motion(row["path"], timeout_s=self.cfg.media.read_timeout_s).astype(np.float32)
        except MediaError as exc:
            return self._failed(out, exc.reason, exc.code)
        except Exception as exc:
            log.exception("unexpected decode failure for %s", row["path"])
            return self._failed(out, f"unexpected decode failure: {type(exc).__name__}: {exc}", "decode_failed")
        return {
            **out,
            "frames": clip.frames,
            "times_s": clip.times_s.astype(np.float32),
            "motion": motion,
            "corrupt_packets": int(clip.corrupt_packets),
            "error": "",
            "error_code": "",
        }


# --- stage 2: backbone (Ray Data actor pool) ----------------------------------------------------


class BackboneActor:
    """Callable class for ``map_batches``: batches of decoded clips -> per-clip features (T, D) float16."""

    def __init__(self, backbone: str, weights: str | None, device: str, batch_size: int, threads: int) -> None:
        import torch

        from nexara.backbones import create_backbone

        torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.model = create_backbone(backbone, weights=weights, device=device)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        clips = list(batch["frames"])
        lengths = [len(c) for c in clips]
        nonempty = [c for c in clips if len(c)]
        feats = np.zeros((0, self.model.feature_dim), np.float16)
        if nonempty:
            frames = np.concatenate(nonempty, axis=0)
            outs = []
            with torch.inference_mode():
                for i in range(0, len(frames), self.batch_size):
                    outs.append(self.model(frames[i : i + self.batch_size]).float().cpu().numpy())
            feats = np.concatenate(outs, axis=0).astype(np.float16)
        per_clip = np.empty(len(clips), dtype=object)
        start = 0
        for i, n in enumerate(lengths):
            per_clip[i] = feats[start : start + n]
            start += n
        result = {
            k: batch[k]
            for k in (
                "path",
                "content_hash",
                "label",
                "source",
                "split",
                "times_s",
                "corrupt_packets",
                "error",
                "error_code",
                "motion",
            )
        }
        result["features"] = per_clip
        return result


# --- driver ---


def build_pipeline(
    items: list[dict[str, Any]], cfg: NexaraConfig, spec: PreprocessSpec, *, backbone: str, motion: bool
) -> Any:
    """Ray Data: decode + sample (+ motion statistics) in CPU tasks, the backbone in an actor pool.

    Decode and model stages get different CPU shares (validated in the config) so Ray Data keeps them
    as separate operators instead of fusing them into one task.
    """
    import ray

    fc = cfg.features
    items_ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / fc.clips_per_block)))
    ds = items_ds.map(DecodeClip(cfg, spec, motion=motion), num_cpus=fc.decode_num_cpus)
    return ds.map_batches(
        BackboneActor,
        fn_constructor_kwargs={
            "backbone": backbone,
            "weights": cfg.model.weights,
            "device": cfg.model.device if fc.model_num_gpus > 0 else "cpu",
            "batch_size": fc.batch_size,
            "threads": fc.torch_threads,
        },
        batch_size=max(1, fc.batch_size // cfg.media.frames_per_clip),
        num_cpus=fc.model_num_cpus,
        num_gpus=fc.model_num_gpus or None,
        compute=ray.data.ActorPoolStrategy(size=fc.model_actors),
        batch_format="numpy",
    )


def _run_pipeline(
    todo: list[dict[str, Any]],
    out_dir: Path,
    cfg: NexaraConfig,
    spec: PreprocessSpec,
    key: StoreKey,
    errors: list[dict[str, str]],
) -> tuple[int, int]:
    """Decode tasks -> backbone actor pool; parts written as results stream in. Returns (clips, frames)."""

    items = [{k: r[k] for k in ("path", "content_hash", "label", "source", "split", "duration_s")} for r in todo]
    ds = build_pipeline(items, cfg, spec, backbone=key.backbone, motion=bool(key.motion_hash))
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    part = extracted = frames = 0
    t_loop = time.perf_counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        tbl, errs = feature_rows(batch, key)
        errors.extend(errs)
        if tbl.num_rows:
            write_atomic(tbl, out_dir / f"part-{run_id}-{part:05d}.parquet")
            part += 1
            extracted += tbl.num_rows
            frames += int(sum(tbl.column("num_frames").to_pylist()))
        elapsed = time.perf_counter() - t_loop
        log.info(
            "features: %d/%d clips, %.2f clips/s, %.1f frames/s, %d failed",
            extracted + len(errors),
            len(todo) + len(errors),
            extracted / elapsed,
            frames / elapsed,
            len(errors),
        )
    return extracted, frames


# --- driver (entry point) ---------------------------------------------------------------------


def extract_features(
    manifest_path: Path, out_dir: Path, cfg: NexaraConfig, *, limit: int | None = None
) -> FeatureRunStats:
    """Run the Ray Data pipeline over a manifest; see the module docstring for the store layout."""

    from training.manifest import read_manifest

    start = time.perf_counter()
    if backbone_kind(cfg.model.backbone) == "clip":
        return _extract_clip_backbone(manifest_path, out_dir, cfg, limit=limit, start=start)
    if cfg.model.frames_per_window or cfg.model.crop_px:
        raise ConfigError(
            f"model.frames_per_window and model.crop_px are for clip backbones; {cfg.model.backbone} is a frame "
            "backbone (media.frames_per_clip sets its T)"
        )
    spec = effective_spec(cfg)
    key = StoreKey.for_config(cfg)
    table = read_manifest(manifest_path)
    rows = table.to_pylist()
    if limit is not None:
        rows = rows[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    done = stored_keys(out_dir, key)
    errors: list[dict[str, str]] = [
        {"path": r["path"], "reason": r["error"], "stage": "scan"} for r in rows if r.get("error")
    ]
    todo = [r for r in rows if not r.get("error") and r["content_hash"] not in done]
    skipped = sum(1 for r in rows if not r.get("error") and r["content_hash"] in done)
    log.info(
        "%d clips in manifest: %d already stored, %d to extract, %d unreadable at scan",
        len(rows),
        skipped,
        len(todo),
        len(errors),
    )
    extracted = frames = 0
    if todo:
        from cluster.runtime import ray_session

        with ray_session(cfg.ray):  # only when there is work: a rerun that skips everything stays instant
            extracted, frames = _run_pipeline(todo, out_dir, cfg, spec, key, errors)
    write_atomic(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA), out_dir / ERRORS_FILE)
    return FeatureRunStats(
        total=len(rows),
        skipped=skipped,
        extracted=extracted,
        failed=len(errors),
        frames=frames,
        wall_s=time.perf_counter() - start,
    )


def _extract_clip_backbone(
    manifest_path: Path, out_dir: Path, cfg: NexaraConfig, *, limit: int | None, start: float
) -> FeatureRunStats:
    from training.clip_features import extract_window_features
    from training.manifest import read_manifest

    rows = read_manifest(manifest_path).to_pylist()[:limit]
    clips, windows, frames, skipped, errors = extract_window_features(rows, out_dir, cfg)
    return FeatureRunStats(
        total=len(rows),
        skipped=skipped,
        extracted=clips,
        failed=len(errors),
        frames=frames,
        wall_s=time.perf_counter() - start,
        windows=windows,
    )
