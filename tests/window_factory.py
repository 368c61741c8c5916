"""A small synthetic window store (real Parquet, written through the store's own functions) and the dataset
manifest beside it, for the tests of training on windows. No clip backbone runs: the features are random
with a class signal, shaped as a clip backbone's per-time output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nexara.config import NexaraConfig
from training.feature_store import write_atomic
from training.manifest import MANIFEST_SCHEMA, write_manifest
from training.window_store import WINDOW_PREFIX, WindowStoreKey, window_rows

T_PRIME, DIM, MOTION_DIM = 4, 16, 12


def _objects(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def write_window_store(
    root: Path, cfg: NexaraConfig, datasets: dict[str, int], *, per_source: int = 6, seed: int = 0
) -> Path:
    """``datasets``: name -> number of sources; each source has ``per_source`` clips alternating no fight /
    fight, clip ``i`` cut into ``1 + i % 3`` windows, the last no-fight clip of a source a hard negative.
    Fights carry an offset in a few appearance and motion dims; every source has its own offset. Writes
    ``root/features`` (windows under ``cfg``'s key) and ``root/manifest.parquet``; returns the features folder."""
    rng = np.random.default_rng(seed)
    key = WindowStoreKey.for_config(cfg)
    rows: dict[str, list[Any]] = {}
    manifest_rows = []
    for name, n_sources in datasets.items():
        for s in range(n_sources):
            source, offset = f"{name}{s}", rng.normal(0, 0.5, DIM)
            for i in range(per_source):
                y, n_windows = i % 2, 1 + i % 3
                path, digest = f"/{name}/{source}/{i}.mp4", f"{name}-{s}-{i}"
                for w in range(n_windows):
                    per_time = rng.normal(0, 1, (T_PRIME, DIM)) + offset
                    motion = rng.normal(0, 1, MOTION_DIM)
                    if y:
                        per_time[:, :4] += 1.5
                        motion[:3] += 1.5
                    window = {
                        "path": path,
                        "content_hash": digest,
                        "label": y,
                        "source": source,
                        "split": "fold0",
                        "window_index": w,
                        "num_windows": n_windows,
                        "start_s": float(w),
                        "end_s": float(w) + 2.0,
                        "times_s": np.linspace(w, w + 2, 8, dtype=np.float32),
                        "corrupt_packets": 0,
                        "error": "",
                        "features": per_time.mean(0).astype(np.float16),
                        "per_time": per_time.astype(np.float16),
                        "motion": motion.astype(np.float32),
                    }
                    for k, v in window.items():
                        rows.setdefault(k, []).append(v)
                manifest_rows.append(
                    {"path": path, "label": y, "source": source, "dataset": name,
                     "hard_negative": i == per_source - 2, "content_hash": digest, "split": "fold0"}
                )  # fmt: skip
    batch = {
        k: _objects(v) if k in ("times_s", "features", "per_time", "motion") else np.asarray(v) for k, v in rows.items()
    }
    table, errors = window_rows(batch, key)
    assert not errors
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    half = table.num_rows // 2  # two parts, as a run writes them
    write_atomic(table.slice(0, half), features / f"{WINDOW_PREFIX}r1-00000.parquet")
    write_atomic(table.slice(half), features / f"{WINDOW_PREFIX}r1-00001.parquet")
    write_manifest(pa.Table.from_pylist(manifest_rows, schema=MANIFEST_SCHEMA), root / "manifest.parquet")
    return features


def window_config_yaml(storage: Path, members: str, *, extra: str = "") -> str:
    """A config on the I3D clip backbone (no weights are loaded: the store is synthetic) with ``members``
    (YAML list items, indented four spaces) and quick training settings."""
    return f"""
model: {{backbone: i3d_kinetics400}}
features: {{motion: true, window_hop_s: 1.0}}
training:
  members:
{members}
  train: {{epochs: 4, batch_size: 16, warmup_epochs: 1, early_stopping_patience: 2}}
  inner_folds: 0
  member_num_cpus: 0.5
  storage_path: {storage}
{extra}"""
