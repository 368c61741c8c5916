"""Ray Data feature extraction end to end on real shared clips, with a corrupt one, then a resume."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from nexara.config import NexaraConfig, parse_config
from training.feature_store import ERRORS_FILE, load_features
from training.features import extract_features
from training.manifest import build_manifest, entries_from_csv, write_manifest


@pytest.fixture(scope="module")
def small_manifest(shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten real clips (5 fight, 5 no-fight) plus one truncated copy of a real clip."""
    root = tmp_path_factory.mktemp("clips")
    with (shared_clips / "clips.csv").open() as f:
        rows = list(csv.DictReader(f))
    picked = [r for r in rows if r["label"] == "fight"][:5] + [r for r in rows if r["label"] == "noFight"][:5]
    src = shared_clips / picked[0]["clip"]
    broken = root / "broken.mp4"
    data = src.read_bytes()
    broken.write_bytes(data[: len(data) // 3])  # cut short: the index/data is gone
    lines = ["clip,label,source"] + [f"{shared_clips / r['clip']},{r['label']},{r['source']}" for r in picked]
    lines.append(f"{broken},fight,broken")
    csv_path = root / "clips.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    cfg = NexaraConfig().dataset
    table = build_manifest(entries_from_csv(csv_path, cfg), cfg)
    out = root / "manifest.parquet"
    write_manifest(table, out)
    return out


def _cfg() -> NexaraConfig:
    return parse_config("features:\n  batch_size: 16\n  clips_per_block: 2\n")


@pytest.mark.usefixtures("ray_local")
def test_features_end_to_end_then_resume(small_manifest: Path, tmp_path: Path) -> None:
    cfg = _cfg()
    out = tmp_path / "features"
    stats = extract_features(small_manifest, out, cfg)
    assert stats.total == 11
    assert stats.extracted == 10
    assert stats.failed == 1
    assert stats.frames == 160

    table = pads.dataset(out).to_table()
    assert table.num_rows == 10
    for col in ("path", "label", "source", "split", "features", "backbone", "preprocessing_hash"):
        assert col in table.column_names
    assert set(table.column("backbone").to_pylist()) == {"efficientnet_lite0"}
    stored = load_features(out)
    x, meta = stored.appearance, stored.meta
    assert x.shape == (10, 16, 1280)
    assert stored.inputs["motion"].shape[:2] == (10, 1)
    motion = stored.inputs["motion"][:, 0]
    assert np.isfinite(motion).all() and motion.std() > 0
    assert np.isfinite(x).all() and x.std() > 0.05
    # different clips give different features; labels survive the round trip
    assert not np.allclose(x[0], x[-1])
    assert sorted(meta.column("label").to_pylist()) == [0] * 5 + [1] * 5

    errors = pq.read_table(out / ERRORS_FILE).to_pylist()
    assert len(errors) == 1 and errors[0]["path"].endswith("broken.mp4") and errors[0]["reason"]

    again = extract_features(small_manifest, out, cfg)
    assert again.extracted == 0 and again.skipped == 10
    assert pads.dataset(out).to_table().num_rows == 10

    # a different preprocessing (resize policy) is a different store key: extracted again
    cfg2 = parse_config("media:\n  resize: letterbox\nfeatures:\n  clips_per_block: 4\n  motion: false\n")
    third = extract_features(small_manifest, out, cfg2, limit=3)
    assert third.extracted == 3
    hashes = set(pads.dataset(out).to_table().column("preprocessing_hash").to_pylist())
    assert len(hashes) == 2


@pytest.mark.usefixtures("ray_local")
def test_features_match_single_process_backbone(small_manifest: Path, tmp_path: Path) -> None:
    """The pipeline's stored features equal the backbone applied directly to the sampled frames."""
    import torch

    from nexara.backbones import create_backbone
    from nexara.media import sample_clip

    cfg = _cfg()
    out = tmp_path / "features"
    extract_features(small_manifest, out, cfg, limit=2)
    stored = load_features(out)
    x, meta = stored.appearance, stored.meta
    model = create_backbone("efficientnet_lite0")
    for i, path in enumerate(meta.column("path").to_pylist()):
        clip = sample_clip(path, num_frames=16, size_hw=(224, 224), resize="squash")
        with torch.inference_mode():
            ref = model(clip.frames).numpy()
        assert np.allclose(x[i], ref, atol=2e-2, rtol=1e-2)


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    from training.manifest import ManifestError

    with pytest.raises(ManifestError, match="manifest not found"):
        extract_features(tmp_path / "nope.parquet", tmp_path / "out", NexaraConfig())
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
