"""The window part of the feature store: what a clip backbone made of each window of each clip.

A clip is cut into windows of ``windows.window_s`` seconds every ``features.window_hop_s`` seconds (a
clip shorter than one window is one window over all of it); each window is one row of
``windows-<run>-<n>.parquet`` in the store folder (beside the frame backbones' ``part-*`` files, which
:mod:`training.feature_store` reads): clip identity and label, ``window_index`` of ``num_windows``,
``start_s``/``end_s``, the pooled features ``(D,)`` and the per-time features ``(T', D)``, keyed by
:class:`WindowStoreKey` (backbone, clip spec hash, hop). Parts are written atomically; a clip counts as
stored only when all of its windows are, and a window stored twice (an interrupted run redone) is read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from nexara.backbones import effective_clip_spec
from nexara.config import NexaraConfig
from nexara.errors import NexaraError
from training.feature_store import split_failed, weights_hash, weights_match

WINDOW_PREFIX = "windows-"
CLIP_COLUMNS = ("path", "content_hash", "label", "source", "split")

WINDOW_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("content_hash", pa.string()),
        ("label", pa.int8()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("window_index", pa.int32()),
        ("num_windows", pa.int32()),
        ("start_s", pa.float32()),
        ("end_s", pa.float32()),
        ("features", pa.list_(pa.float16())),
        ("per_time", pa.list_(pa.list_(pa.float16()))),
        ("frame_times_s", pa.list_(pa.float32())),
        ("num_frames", pa.int32()),
        ("feature_dim", pa.int32()),
        ("corrupt_packets", pa.int32()),
        ("backbone", pa.string()),
        ("clip_spec_hash", pa.string()),
        ("window_hop_s", pa.float32()),
        # optical-flow statistics of the window (nexara.motion.window_motion); empty when not computed
        ("motion", pa.list_(pa.float32())),
        ("motion_hash", pa.string()),
        # the backbone's weights file when not the stock one (model.weights: a fine-tuned backbone); "" or
        # absent (stores written before this column) = the stock weights
        ("weights_hash", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class WindowStoreKey:
    """What makes stored windows reusable: the backbone, its clip spec (T, window, crop...), the hop, the
    motion spec of the windows' flow statistics (``""`` when they are not computed) and the backbone's
    weights (``""``: the stock ones; else the first 16 hex digits of ``model.weights``' SHA-256)."""

    backbone: str
    clip_spec_hash: str
    window_hop_s: float
    motion_hash: str = ""
    weights_hash: str = ""

    @classmethod
    def for_config(cls, cfg: NexaraConfig) -> WindowStoreKey:
        motion_hash = ""
        if cfg.features.motion:
            from nexara.motion import MotionSpec

            motion_hash = MotionSpec().hash()
        spec_hash = effective_clip_spec(cfg).hash()
        return cls(cfg.model.backbone, spec_hash, float(cfg.features.window_hop_s), motion_hash, weights_hash(cfg))

    def expression(self) -> pc.Expression:
        # the hop is stored as float32: compare it at that precision
        hop = pa.scalar(self.window_hop_s, pa.float32())
        expr = (
            (pc.field("backbone") == self.backbone)
            & (pc.field("clip_spec_hash") == self.clip_spec_hash)
            & (pc.field("window_hop_s") == hop)
        )
        if self.motion_hash:
            expr = expr & (pc.field("motion_hash") == self.motion_hash)
        return expr & weights_match(self.weights_hash)


def _parts(out_dir: Path) -> list[str]:
    return sorted(str(p) for p in out_dir.glob(f"{WINDOW_PREFIX}*.parquet"))


def _table(out_dir: Path, key: WindowStoreKey | None, columns: list[str] | None = None) -> pa.Table:
    try:
        ds = pads.dataset(_parts(out_dir), format="parquet", schema=WINDOW_SCHEMA)
        return ds.to_table(columns=columns, filter=key.expression() if key else None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise NexaraError(f"{out_dir}: existing window store cannot be read ({exc})") from None


def stored_clips(out_dir: Path, key: WindowStoreKey) -> set[str]:
    """Content hashes of the clips whose every window is stored under ``key``."""
    if not out_dir.is_dir() or not _parts(out_dir):
        return set()
    t = _table(out_dir, key, ["content_hash", "window_index", "num_windows"])
    seen: dict[str, set[int]] = {}
    expected: dict[str, int] = {}
    for h, i, n in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True):
        seen.setdefault(h, set()).add(i)
        expected[h] = n
    return {h for h, idx in seen.items() if len(idx) == expected[h]}


def window_rows(batch: dict[str, np.ndarray], key: WindowStoreKey) -> tuple[pa.Table, list[dict[str, str]]]:
    """A batch out of the clip backbone actors -> (window rows, failed clips for ``_errors.parquet``)."""
    rows = []
    ok, errors = split_failed(batch)
    for i in ok:
        per_time = np.asarray(batch["per_time"][i], dtype=np.float16)
        rows.append(
            {
                **{c: batch[c][i] for c in CLIP_COLUMNS},
                "window_index": int(batch["window_index"][i]),
                "num_windows": int(batch["num_windows"][i]),
                "start_s": float(batch["start_s"][i]),
                "end_s": float(batch["end_s"][i]),
                "features": np.asarray(batch["features"][i], dtype=np.float16),
                "per_time": per_time,
                "frame_times_s": np.asarray(batch["times_s"][i], dtype=np.float32),
                "num_frames": len(batch["times_s"][i]),
                "feature_dim": int(per_time.shape[1]),
                "corrupt_packets": int(batch["corrupt_packets"][i]),
                "backbone": key.backbone,
                "clip_spec_hash": key.clip_spec_hash,
                "window_hop_s": key.window_hop_s,
                "motion": np.asarray(batch["motion"][i], dtype=np.float32)
                if "motion" in batch
                else np.zeros(0, np.float32),
                "motion_hash": key.motion_hash,
                "weights_hash": key.weights_hash,
            }
        )
    return _rows_to_table(rows), errors


def _list_of(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """list<value_type> from 1-d arrays, built from one flat buffer (no Python floats)."""
    if not arrays:
        return pa.array([], type=pa.list_(value_type))
    offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(arrays), type=value_type))


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    arrays = []
    for field in WINDOW_SCHEMA:
        values = [r[field.name] for r in rows]
        if field.name in ("features", "frame_times_s", "motion"):
            arrays.append(_list_of(values, field.type.value_type))
        elif field.name == "per_time":
            inner = _list_of([row for pt in values for row in pt], pa.float16())
            offsets = np.cumsum([0] + [len(pt) for pt in values]).astype(np.int32)
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), inner))
        else:
            arrays.append(pa.array([str(v) if field.type == pa.string() else v for v in values], type=field.type))
    return pa.Table.from_arrays(arrays, schema=WINDOW_SCHEMA)


@dataclass(frozen=True, slots=True)
class StoredWindows:
    """Every stored window: ``pooled`` (N, D), ``per_time`` (N, T', D) float32, ``motion`` (N, MOTION_DIM)
    float32 flow statistics (None unless every window has them), and the metadata table (clip columns,
    ``window_index``, ``start_s``, ``end_s``...), ordered by clip (content hash) then window."""

    pooled: np.ndarray
    per_time: np.ndarray
    meta: pa.Table
    motion: np.ndarray | None = None


def load_windows(out_dir: Path, *, key: WindowStoreKey | None = None) -> StoredWindows:
    """Stored windows (under ``key``, or all) as arrays plus metadata; a window stored twice is read once."""
    if not out_dir.is_dir() or not _parts(out_dir):
        raise NexaraError(f"{out_dir}: no window store here (run `nexara features` with a clip backbone)")
    table = _table(out_dir, key)
    if table.num_rows == 0:
        raise NexaraError(f"{out_dir}: no stored windows match {key}")
    i = table.schema.get_field_index("weights_hash")  # stock weights: "" (null in stores older than the column)
    table = table.set_column(i, "weights_hash", pc.coalesce(table.column(i), pa.scalar("")))
    order = ["content_hash", "backbone", "clip_spec_hash", "window_hop_s", "motion_hash", "weights_hash"]
    order.append("window_index")
    table = table.sort_by([(c, "ascending") for c in order])
    ids = list(zip(*(table.column(c).to_pylist() for c in order), strict=True))
    first = [i for i, k in enumerate(ids) if i == 0 or k != ids[i - 1]]
    table = table.take(pa.array(first, pa.int64()))
    lengths = pc.list_value_length(table.column("per_time")).to_pylist()
    shapes = set(zip(lengths, table.column("feature_dim").to_pylist(), strict=True))
    if len(shapes) != 1:
        raise NexaraError(f"{out_dir}: windows have different shapes (T', D) in {sorted(shapes)}; load one key")
    t_prime, dim = shapes.pop()
    pooled = pc.list_flatten(table.column("features")).to_numpy(zero_copy_only=False).astype(np.float32)
    per_time = pc.list_flatten(pc.list_flatten(table.column("per_time"))).to_numpy(zero_copy_only=False)
    motion_lengths = set(pc.list_value_length(table.column("motion")).fill_null(0).to_pylist())
    motion = None
    if len(motion_lengths) == 1 and (m_dim := motion_lengths.pop()) > 0:
        flat = pc.list_flatten(table.column("motion")).to_numpy(zero_copy_only=False)
        motion = flat.astype(np.float32).reshape(table.num_rows, m_dim)
    return StoredWindows(
        pooled.reshape(table.num_rows, dim),
        per_time.astype(np.float32).reshape(table.num_rows, t_prime, dim),
        table.drop_columns(["features", "per_time", "motion"]),
        motion,
    )
