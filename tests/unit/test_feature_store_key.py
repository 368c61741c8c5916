"""The frame-backbone feature store keeps features of different backbone weights apart (``model.weights``,
e.g. a fine-tuned backbone), and a store written before the weights column reads as the stock weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nexara.config import parse_config
from nexara.errors import NexaraError
from training.feature_store import StoreKey, feature_rows, load_features, stored_keys, write_atomic

pytestmark = pytest.mark.unit

KEY = StoreKey("efficientnet_lite0", "a" * 16, 8, "")
TUNED = StoreKey(KEY.backbone, KEY.preprocessing_hash, KEY.frames_per_clip, "", weights_hash="f" * 16)


def _batch(clip: str) -> dict[str, np.ndarray]:
    def objects(items: list[np.ndarray]) -> np.ndarray:
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out

    return {
        "path": np.array([f"/clips/{clip}.mp4"]),
        "content_hash": np.array([clip]),
        "label": np.array([1]),
        "source": np.array(["src"]),
        "split": np.array(["train"]),
        "features": objects([np.ones((8, 4), np.float16)]),
        "times_s": objects([np.linspace(0, 2, 8, dtype=np.float32)]),
        "corrupt_packets": np.zeros(1, np.int64),
        "motion": objects([np.zeros(0, np.float32)]),
        "error": np.array([""]),
    }


def test_features_of_other_weights_stay_apart(tmp_path: Path) -> None:
    for name, clip, key in (("stock", "a", KEY), ("tuned", "b", TUNED)):
        table, errors = feature_rows(_batch(clip), key)
        assert errors == []
        write_atomic(table, tmp_path / f"part-{name}.parquet")
    assert stored_keys(tmp_path, KEY) == {"a"} and stored_keys(tmp_path, TUNED) == {"b"}
    assert load_features(tmp_path, key=TUNED).meta.column("content_hash").to_pylist() == ["b"]

    old = tmp_path / "old"
    old.mkdir()
    table, _ = feature_rows(_batch("c"), KEY)
    pq.write_table(table.drop_columns(["weights_hash"]), old / "part-old.parquet")
    assert stored_keys(old, KEY) == {"c"} and stored_keys(old, TUNED) == set()


def test_key_hashes_the_weights_file(tmp_path: Path) -> None:
    weights = tmp_path / "backbone.pt"
    weights.write_bytes(b"tuned weights")
    tuned = StoreKey.for_config(parse_config(f"model:\n  weights: {weights}\n"))
    stock = StoreKey.for_config(parse_config("{}"))
    assert len(tuned.weights_hash) == 16 and stock.weights_hash == ""
    assert tuned.preprocessing_hash == stock.preprocessing_hash
    with pytest.raises(NexaraError, match="no such file"):
        StoreKey.for_config(parse_config(f"model:\n  weights: {tmp_path / 'missing.pt'}\n"))
