"""The window store without Ray: rows round-trip, a clip counts as stored only with all its windows, a
window stored twice is read once, and keys keep recipes apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nexara.errors import NexaraError
from training.feature_store import write_atomic
from training.window_store import WindowStoreKey, load_windows, stored_clips, window_rows

pytestmark = pytest.mark.unit

KEY = WindowStoreKey("i3d_kinetics400", "a" * 16, 1.0)
D, TP = 4, 2


def _batch(clip: str, indices: list[int], num_windows: int, *, error: str = "") -> dict[str, np.ndarray]:
    n = len(indices)

    def objects(items: list[np.ndarray]) -> np.ndarray:
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out

    return {
        "path": np.array([f"/clips/{clip}.mp4"] * n),
        "content_hash": np.array([clip] * n),
        "label": np.array([1] * n),
        "source": np.array(["src"] * n),
        "split": np.array(["train"] * n),
        "window_index": np.array(indices),
        "num_windows": np.array([num_windows] * n),
        "start_s": np.array([float(i) for i in indices]),
        "end_s": np.array([float(i) + 2.0 for i in indices]),
        "times_s": objects([np.linspace(i, i + 2, 8, dtype=np.float32) for i in indices]),
        "corrupt_packets": np.zeros(n, np.int64),
        "error": np.array([error] * n),
        "features": objects([np.full(D, i, np.float16) for i in indices]),
        "per_time": objects([np.full((TP, D), i + 0.5, np.float16) for i in indices]),
    }


def _write(out: Path, name: str, batch: dict[str, np.ndarray], key: WindowStoreKey = KEY) -> list[dict[str, str]]:
    table, errors = window_rows(batch, key)
    if table.num_rows:
        write_atomic(table, out / f"windows-{name}.parquet")
    return errors


def test_windows_round_trip_and_resume_semantics(tmp_path: Path) -> None:
    assert stored_clips(tmp_path, KEY) == set()
    _write(tmp_path, "r1-0", _batch("a", [0, 1, 2], 3))
    _write(tmp_path, "r1-1", _batch("b", [0], 2))  # clip b: interrupted after its first window
    assert stored_clips(tmp_path, KEY) == {"a"}
    _write(tmp_path, "r2-0", _batch("b", [0, 1], 2))  # the rerun stores b again, whole
    assert stored_clips(tmp_path, KEY) == {"a", "b"}

    stored = load_windows(tmp_path, key=KEY)
    assert stored.pooled.shape == (5, D) and stored.per_time.shape == (5, TP, D)  # b's window 0 read once
    meta = stored.meta.to_pylist()
    assert [(r["content_hash"], r["window_index"]) for r in meta] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    np.testing.assert_array_equal(stored.pooled[:, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(stored.per_time[:, 0, 0], [0.5, 1.5, 2.5, 0.5, 1.5])
    assert meta[1]["start_s"] == 1.0 and meta[1]["end_s"] == 3.0 and len(meta[1]["frame_times_s"]) == 8
    assert {r["clip_spec_hash"] for r in meta} == {KEY.clip_spec_hash} and meta[0]["num_frames"] == 8


def test_failed_clips_become_errors_and_keys_stay_apart(tmp_path: Path) -> None:
    errors = _write(tmp_path, "e", _batch("bad", [-1], 0, error="cut short"))
    assert errors == [{"path": "/clips/bad.mp4", "reason": "cut short", "stage": "decode"}]
    assert not list(tmp_path.glob("*.parquet"))
    with pytest.raises(NexaraError, match="no window store"):
        load_windows(tmp_path)
    other = WindowStoreKey(KEY.backbone, "b" * 16, 0.5)
    _write(tmp_path, "k1", _batch("a", [0], 1))
    _write(tmp_path, "k2", _batch("a", [0, 1], 2), key=other)
    assert stored_clips(tmp_path, KEY) == {"a"} and stored_clips(tmp_path, other) == {"a"}
    assert len(load_windows(tmp_path, key=other).meta) == 2
    assert len(load_windows(tmp_path).meta) == 3
    with pytest.raises(NexaraError, match="no stored windows match"):
        load_windows(tmp_path, key=WindowStoreKey(KEY.backbone, "c" * 16, 1.0))


def test_windows_of_other_backbone_weights_stay_apart_and_old_stores_read_as_stock(tmp_path: Path) -> None:
    """Features of a fine-tuned backbone (model.weights) are not mixed with the stock backbone's under the
    same clip spec; a store written before the weights column counts as stock weights."""
    import pyarrow.parquet as pq

    from nexara.config import parse_config

    tuned = WindowStoreKey(KEY.backbone, KEY.clip_spec_hash, KEY.window_hop_s, weights_hash="f" * 16)
    _write(tmp_path, "stock", _batch("a", [0], 1))
    _write(tmp_path, "tuned", _batch("a", [0, 1], 2), key=tuned)
    assert stored_clips(tmp_path, KEY) == {"a"} and stored_clips(tmp_path, tuned) == {"a"}
    assert len(load_windows(tmp_path, key=KEY).meta) == 1 and len(load_windows(tmp_path, key=tuned).meta) == 2

    old = tmp_path / "old"
    old.mkdir()
    table, _ = window_rows(_batch("b", [0], 1), KEY)
    pq.write_table(table.drop_columns(["weights_hash"]), old / "windows-old.parquet")
    assert stored_clips(old, KEY) == {"b"} and stored_clips(old, tuned) == set()
    assert load_windows(old, key=KEY).meta.column("weights_hash").to_pylist() == [""]

    weights = tmp_path / "backbone.pt"
    weights.write_bytes(b"tuned weights")
    cfg = parse_config(f"model:\n  backbone: i3d_kinetics400\n  weights: {weights}\n")
    assert len(WindowStoreKey.for_config(cfg).weights_hash) == 16
    assert WindowStoreKey.for_config(parse_config("model:\n  backbone: i3d_kinetics400\n")).weights_hash == ""
