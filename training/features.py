"""Feature store: decode + sample clips in Ray Data CPU tasks, run the backbone in an actor pool, and
write one Parquet dataset (readable with ``pyarrow.dataset.dataset(DIR)``).

Layout of ``DIR``: ``part-<run>-<n>.parquet`` files with one row per clip, and ``_errors.parquet`` (the
leading underscore keeps it out of ``pyarrow.dataset``) with ``path`` and ``reason`` for clips that failed
in the last run. Parts are written atomically as results stream in, so an interrupted run keeps what it
finished and a rerun skips every clip already stored for the same backbone, preprocessing and T.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from nexara.backbones import PreprocessSpec, get_spec
from nexara.config import NexaraConfig
from nexara.errors import MediaError, NexaraError

log = logging.getLogger(__name__)

ERRORS_FILE = "_errors.parquet"

FEATURE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("content_hash", pa.string()),
        ("label", pa.int8()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("features", pa.list_(pa.list_(pa.float16()))),
        ("num_frames", pa.int32()),
        ("feature_dim", pa.int32()),
        ("frame_times_s", pa.list_(pa.float32())),
        ("corrupt_packets", pa.int32()),
        ("backbone", pa.string()),
        ("preprocessing_hash", pa.string()),
        ("frames_per_clip", pa.int32()),
        ("motion", pa.list_(pa.float32())),
        ("motion_hash", pa.string()),
    ]
)
ERROR_SCHEMA = pa.schema([("path", pa.string()), ("reason", pa.string()), ("stage", pa.string())])


def effective_spec(cfg: NexaraConfig) -> PreprocessSpec:
    """The backbone's preprocessing spec with the configured resize policy."""
    return replace(get_spec(cfg.model.backbone), resize=cfg.media.resize)


@dataclass(frozen=True, slots=True)
class FeatureRunStats:
    total: int
    skipped: int
    extracted: int
    failed: int
    frames: int
    wall_s: float

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


# --- store --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreKey:
    """What makes stored features reusable: same backbone, preprocessing, T and motion spec."""

    backbone: str
    preprocessing_hash: str
    frames_per_clip: int
    motion_hash: str  # "" when the motion stream is off

    @classmethod
    def for_config(cls, cfg: NexaraConfig) -> StoreKey:
        motion_hash = ""
        if cfg.features.motion:
            from nexara.motion import MotionSpec

            motion_hash = MotionSpec().hash()
        return cls(cfg.model.backbone, effective_spec(cfg).hash(), cfg.media.frames_per_clip, motion_hash)

    def expression(self) -> pc.Expression:
        expr = (
            (pc.field("backbone") == self.backbone)
            & (pc.field("preprocessing_hash") == self.preprocessing_hash)
            & (pc.field("frames_per_clip") == self.frames_per_clip)
        )
        if self.motion_hash:
            expr = expr & (pc.field("motion_hash") == self.motion_hash)
        return expr


def _dataset(out_dir: Path) -> pads.Dataset:
    try:
        return pads.dataset(out_dir, format="parquet", schema=FEATURE_SCHEMA)
    except (pa.ArrowInvalid, OSError) as exc:
        raise NexaraError(f"{out_dir}: existing feature store cannot be read ({exc})") from None


def stored_keys(out_dir: Path, key: StoreKey) -> set[str]:
    """Content hashes already stored under ``key``."""
    if not out_dir.is_dir() or not any(out_dir.glob("*.parquet")):
        return set()
    try:
        table = _dataset(out_dir).to_table(columns=["content_hash"], filter=key.expression())
    except (pa.ArrowInvalid, OSError) as exc:
        raise NexaraError(f"{out_dir}: existing feature store cannot be read ({exc})") from None
    return set(table.column("content_hash").to_pylist())


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _feature_rows(batch: dict[str, np.ndarray], key: StoreKey) -> tuple[pa.Table, list[dict[str, str]]]:
    rows, errors = [], []
    for i in range(len(batch["path"])):
        err = str(batch["error"][i])
        if err:
            errors.append({"path": str(batch["path"][i]), "reason": err, "stage": "decode"})
            continue
        f = np.asarray(batch["features"][i], dtype=np.float16)
        rows.append(
            {
                "path": str(batch["path"][i]),
                "content_hash": str(batch["content_hash"][i]),
                "label": int(batch["label"][i]),
                "source": str(batch["source"][i]),
                "split": str(batch["split"][i]),
                "features": f,
                "num_frames": int(f.shape[0]),
                "feature_dim": int(f.shape[1]),
                "frame_times_s": np.asarray(batch["times_s"][i], dtype=np.float32),
                "corrupt_packets": int(batch["corrupt_packets"][i]),
                "backbone": key.backbone,
                "preprocessing_hash": key.preprocessing_hash,
                "frames_per_clip": key.frames_per_clip,
                "motion": np.asarray(batch["motion"][i], dtype=np.float32),
                "motion_hash": key.motion_hash,
            }
        )
    return _rows_to_table(rows), errors


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols: dict[str, Any] = {name: [r[name] for r in rows] for name in FEATURE_SCHEMA.names if name != "features"}
    feats = [r["features"] for r in rows]
    if feats:
        offsets_outer = np.cumsum([0] + [f.shape[0] for f in feats]).astype(np.int32)
        inner_lengths = [f.shape[1] for f in feats for _ in range(f.shape[0])]
        offsets_inner = np.cumsum([0, *inner_lengths]).astype(np.int32)
        values = pa.array(np.concatenate([f.reshape(-1) for f in feats]), type=pa.float16())
        inner = pa.ListArray.from_arrays(pa.array(offsets_inner), values)
        outer = pa.ListArray.from_arrays(pa.array(offsets_outer), inner)
    else:
        outer = pa.array([], type=FEATURE_SCHEMA.field("features").type)
    cols["frame_times_s"] = [list(map(float, t)) for t in cols["frame_times_s"]]
    cols["motion"] = [list(map(float, m)) for m in cols["motion"]]
    arrays = []
    for field in FEATURE_SCHEMA:
        arrays.append(outer if field.name == "features" else pa.array(cols[field.name], type=field.type))
    return pa.Table.from_arrays(arrays, schema=FEATURE_SCHEMA)


@dataclass(frozen=True, slots=True)
class StoredFeatures:
    """Inputs of every stored clip: ``appearance`` (N, T, D) and, when stored, ``motion`` (N, 1, M)."""

    inputs: dict[str, np.ndarray]
    meta: pa.Table

    @property
    def appearance(self) -> np.ndarray:
        return self.inputs["appearance"]


def load_features(out_dir: Path, *, key: StoreKey | None = None, backbone: str | None = None) -> StoredFeatures:
    """Stored clips (under ``key``, or of ``backbone``, or all) as arrays plus the metadata table."""
    if not out_dir.is_dir() or not any(out_dir.glob("*.parquet")):
        raise NexaraError(f"{out_dir}: no feature store here (run `nexara features MANIFEST --out {out_dir}`)")
    expr = key.expression() if key else (pc.field("backbone") == backbone if backbone else None)
    table = _dataset(out_dir).to_table(filter=expr)
    if table.num_rows == 0:
        raise NexaraError(f"{out_dir}: no stored features match {key or backbone}")
    t = set(table.column("num_frames").to_pylist())
    d = set(table.column("feature_dim").to_pylist())
    if len(t) != 1 or len(d) != 1:
        raise NexaraError(f"{out_dir}: clips have different shapes (T in {sorted(t)}, D in {sorted(d)})")
    flat = pc.list_flatten(pc.list_flatten(table.column("features")))
    arr = flat.to_numpy(zero_copy_only=False).astype(np.float32)
    inputs = {"appearance": arr.reshape(table.num_rows, t.pop(), d.pop())}
    lengths = pc.list_value_length(table.column("motion")).to_numpy(zero_copy_only=False)
    if len(lengths) and lengths.min() > 0 and lengths.min() == lengths.max():
        m = pc.list_flatten(table.column("motion")).to_numpy(zero_copy_only=False).astype(np.float32)
        inputs["motion"] = m.reshape(table.num_rows, 1, int(lengths[0]))
    return StoredFeatures(inputs, table.drop_columns(["features", "motion"]))


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
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / fc.clips_per_block)))
    ds = ds.map(DecodeClip(cfg, spec, motion=motion), num_cpus=fc.decode_num_cpus)
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
        tbl, errs = _feature_rows(batch, key)
        errors.extend(errs)
        if tbl.num_rows:
            _write_atomic(tbl, out_dir / f"part-{run_id}-{part:05d}.parquet")
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
    _write_atomic(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA), out_dir / ERRORS_FILE)
    return FeatureRunStats(
        total=len(rows),
        skipped=skipped,
        extracted=extracted,
        failed=len(errors),
        frames=frames,
        wall_s=time.perf_counter() - start,
    )
