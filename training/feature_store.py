"""The feature store: Parquet parts (``part-*``, one row per clip: what this module reads), keyed by what makes
stored features reusable (:class:`StoreKey`: backbone, preprocessing, T and motion spec).

Layout of ``DIR``: ``part-<run>-<n>.parquet`` files with one row per clip, and ``_errors.parquet`` (the
leading underscore keeps it out of ``pyarrow.dataset``) with ``path`` and ``reason`` for clips that failed
in the last run. Clip backbones store one row per window in ``windows-*.parquet`` files of the same folder
(:mod:`training.window_store`); this module reads the ``part-*`` files only. Parts are written atomically
(:func:`write_atomic`), so an interrupted run keeps what it finished and a rerun skips every clip already
stored under the same key.
"""

from __future__ import annotations

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
from nexara.errors import NexaraError

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
        # the backbone's weights file when not the stock one (model.weights); "" or absent (stores written
        # before this column) = the stock weights
        ("weights_hash", pa.string()),
    ]
)
ERROR_SCHEMA = pa.schema([("path", pa.string()), ("reason", pa.string()), ("stage", pa.string())])


def effective_spec(cfg: NexaraConfig) -> PreprocessSpec:
    """The backbone's preprocessing spec with the configured resize policy."""
    return replace(get_spec(cfg.model.backbone), resize=cfg.media.resize)


def weights_hash(cfg: NexaraConfig) -> str:
    """``""`` for the backbone's stock weights, else the first 16 hex digits of ``model.weights``' SHA-256
    (a fine-tuned or user-supplied backbone), so features of different weights never mix in a store."""
    if not cfg.model.weights:
        return ""
    from nexara.model_manifest import sha256_file

    weights = Path(cfg.model.weights).expanduser()
    if not weights.is_file():
        raise NexaraError(f"model.weights: no such file: {weights}")
    return sha256_file(weights)[:16]


def weights_match(expected: str) -> pc.Expression:
    return pc.coalesce(pc.field("weights_hash"), pa.scalar("")) == expected  # null in stores older than the column


@dataclass(frozen=True, slots=True)
class StoreKey:
    """What makes stored features reusable: same backbone, preprocessing, T, motion spec and weights."""

    backbone: str
    preprocessing_hash: str
    frames_per_clip: int
    motion_hash: str  # "" when the motion stream is off
    weights_hash: str = ""  # "" = the stock weights (see weights_hash)

    @classmethod
    def for_config(cls, cfg: NexaraConfig) -> StoreKey:
        motion_hash = ""
        if cfg.features.motion:
            from nexara.motion import MotionSpec

            motion_hash = MotionSpec().hash()
        spec_hash = effective_spec(cfg).hash()
        return cls(cfg.model.backbone, spec_hash, cfg.media.frames_per_clip, motion_hash, weights_hash(cfg))

    def expression(self) -> pc.Expression:
        expr = (
            (pc.field("backbone") == self.backbone)
            & (pc.field("preprocessing_hash") == self.preprocessing_hash)
            & (pc.field("frames_per_clip") == self.frames_per_clip)
        )
        if self.motion_hash:
            expr = expr & (pc.field("motion_hash") == self.motion_hash)
        return expr & weights_match(self.weights_hash)


def _parts(out_dir: Path) -> list[str]:
    return sorted(str(p) for p in out_dir.glob("part-*.parquet"))


def _dataset(out_dir: Path) -> pads.Dataset:
    try:
        return pads.dataset(_parts(out_dir), format="parquet", schema=FEATURE_SCHEMA)
    except (pa.ArrowInvalid, OSError) as exc:
        raise NexaraError(f"{out_dir}: existing feature store cannot be read ({exc})") from None


def stored_keys(out_dir: Path, key: StoreKey) -> set[str]:
    """Content hashes already stored under ``key``."""
    if not out_dir.is_dir() or not _parts(out_dir):
        return set()
    try:
        table = _dataset(out_dir).to_table(columns=["content_hash"], filter=key.expression())
    except (pa.ArrowInvalid, OSError) as exc:
        raise NexaraError(f"{out_dir}: existing feature store cannot be read ({exc})") from None
    return set(table.column("content_hash").to_pylist())


def write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def split_failed(batch: dict[str, np.ndarray]) -> tuple[list[int], list[dict[str, str]]]:
    """Rows of a model batch that decoded, and the failed ones as records for ``_errors.parquet``."""
    ok, errors = [], []
    for i in range(len(batch["path"])):
        err = str(batch["error"][i])
        if err:
            errors.append({"path": str(batch["path"][i]), "reason": err, "stage": "decode"})
        else:
            ok.append(i)
    return ok, errors


def feature_rows(batch: dict[str, np.ndarray], key: StoreKey) -> tuple[pa.Table, list[dict[str, str]]]:
    rows = []
    ok, errors = split_failed(batch)
    for i in ok:
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
                "weights_hash": key.weights_hash,
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
    if not out_dir.is_dir() or not _parts(out_dir):
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
