"""`nexara evaluate --lodo` end to end on Ray: a synthetic two-dataset feature store and its manifest ->
grouped CV per dataset and leave one dataset out, fitted by the same nested CV code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from nexara.config import parse_config
from nexara.errors import TrainingError
from training.feature_store import StoreKey, feature_rows, write_atomic
from training.manifest import MANIFEST_SCHEMA, write_manifest
from training.pipeline import run_evaluate

pytestmark = pytest.mark.usefixtures("ray_local")

T, D = 6, 8


def _store(root: Path, cfg, datasets: dict[str, int], per_source: int = 6) -> None:
    """``datasets``: name -> number of sources. Fights oscillate in a few dims; each source has an offset;
    the last no-fight clip of every source is a hard negative."""
    rng = np.random.default_rng(0)
    batch: dict[str, list] = {k: [] for k in ("path", "content_hash", "label", "source", "split", "error")}
    batch |= {"features": [], "times_s": [], "corrupt_packets": [], "motion": []}
    manifest_rows = []
    for name, n_sources in datasets.items():
        for s in range(n_sources):
            offset = rng.normal(0, 0.5, D)
            for i in range(per_source):
                y = i % 2
                x = rng.normal(0, 1, (T, D)) + offset
                if y:
                    x[:, :3] += 3.0 * np.sin(np.arange(T) * 1.7)[:, None]
                path, digest = f"/{name}/s{s}/{i}.mp4", f"{name}-{s}-{i}"
                for key, value in (("path", path), ("content_hash", digest), ("label", y), ("source", f"{name}{s}")):
                    batch[key].append(value)
                batch["split"].append("fold0")
                batch["error"].append("")
                batch["features"].append(x.astype(np.float32))
                batch["times_s"].append(np.arange(T, dtype=np.float32))
                batch["corrupt_packets"].append(0)
                batch["motion"].append(np.zeros(0, np.float32))
                manifest_rows.append(
                    {"path": path, "label": y, "source": f"{name}{s}", "dataset": name,
                     "hard_negative": i == per_source - 2, "content_hash": digest, "split": "fold0"}
                )  # fmt: skip
    table, errors = feature_rows(batch, StoreKey.for_config(cfg))  # lists index like the arrays Ray Data gives
    assert not errors
    (root / "features").mkdir(parents=True)
    write_atomic(table, root / "features" / "part-0.parquet")
    write_manifest(pa.Table.from_pylist(manifest_rows, schema=MANIFEST_SCHEMA), root / "manifest.parquet")


def test_evaluate_per_dataset_and_leave_one_dataset_out(tmp_path: Path) -> None:
    cfg = parse_config(
        f"""
features: {{motion: false}}
training:
  members:
    - {{name: stats, head: stats, motion: true}}
  train: {{epochs: 4, batch_size: 16, warmup_epochs: 1, early_stopping_patience: 2}}
  inner_folds: 3
  member_num_cpus: 0.5
  storage_path: {tmp_path / "ray_results"}
"""
    )
    _store(tmp_path, cfg, {"city": 6, "peru": 3})  # "peru" has 3 sources: LODO trains on it with 3 inner folds
    out = tmp_path / "eval"
    ev = run_evaluate(tmp_path / "features", out, cfg, k=3, lodo=True)  # manifest found beside the features
    assert ev.labels.names == ["city", "peru"] and int(ev.labels.hard_negative.sum()) == 9
    assert ev.lodo is not None and ev.lodo.fold_names == ["city", "peru"] and ev.lodo.inner_folds == 3
    held_out = {name: set(ev.labels.datasets[idx]) for name, idx in zip(ev.lodo.fold_names, ev.lodo.folds, strict=True)}
    assert held_out == {"city": {"city"}, "peru": {"peru"}}
    doc = json.loads((out / "report.json").read_text())
    assert set(doc["per_dataset"]) == {"city", "peru", "all"}
    peru = doc["leave_one_dataset_out"]["per_dataset"]["peru"]["ensemble"]
    assert peru["n"] == 18 and peru["n_hard_negative"] == 3 and peru["roc_auc"] > 0.8
    text = (out / "report.md").read_text()
    assert "## Leave one dataset out" in text and "- peru: 18 clips, 3 sources" in text

    (tmp_path / "manifest.parquet").unlink()  # without it every clip is one dataset: nothing to leave out
    with pytest.raises(TrainingError, match="at least 2 datasets"):
        run_evaluate(tmp_path / "features", out, cfg, k=3, lodo=True)
