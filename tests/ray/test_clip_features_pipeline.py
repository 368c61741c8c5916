"""A clip backbone (I3D, small profile: T=8 at 112 px) through Ray Data on real shared clips: one row per
window in the store, the same features as the backbone applied directly, a resume, and another hop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nexara.backbones import effective_clip_spec
from nexara.config import NexaraConfig, parse_config
from nexara.errors import NexaraError
from training.feature_store import ERRORS_FILE, load_features
from training.features import extract_features
from training.manifest import build_manifest, entries_from_csv, write_manifest
from training.window_store import WindowStoreKey, load_windows

# 1.6 s (shorter than a window), 4.7 s, 3.4 s and 2.8 s at 12 fps: one, three, two and one windows
CLIPS = [
    ("fight/fi034.mp4", "fight", "src06"),
    ("fight/fi063.mp4", "fight", "src09"),
    ("noFight/nofi002.mp4", "noFight", "src01"),
    ("noFight/nofi007.mp4", "noFight", "src16"),
]
CONFIG = """
model:
  backbone: i3d_kinetics400
  frames_per_window: 8
  crop_px: 112
features:
  batch_size: 16
  clips_per_block: 2
"""


@pytest.fixture(scope="module")
def clip_manifest(shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    broken = root / "broken.mp4"
    data = (shared_clips / CLIPS[0][0]).read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    lines = ["clip,label,source", *(f"{shared_clips / c},{label},{src}" for c, label, src in CLIPS)]
    lines.append(f"{broken},fight,broken")
    csv_path = root / "clips.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    cfg = NexaraConfig().dataset
    out = root / "manifest.parquet"
    write_manifest(build_manifest(entries_from_csv(csv_path, cfg), cfg), out)
    return out


def _expected_windows(shared_clips: Path, hop_s: float) -> dict[str, int]:
    from nexara.media import probe, window_indices

    out = {}
    for c, _, _ in CLIPS:
        info = probe(shared_clips / c)
        idx, _ = window_indices(info.frame_count, info.fps, window_s=2.0, hop_s=hop_s, num_frames=8)
        out[str(shared_clips / c)] = len(idx)
    return out


@pytest.mark.usefixtures("ray_local")
def test_clip_backbone_windows_end_to_end(clip_manifest: Path, shared_clips: Path, tmp_path: Path) -> None:
    import torch

    from nexara.backbones import create_clip_backbone
    from nexara.media import sample_windows

    cfg = parse_config(CONFIG)
    spec = effective_clip_spec(cfg)
    assert (spec.num_frames, spec.window_s, spec.short_side_px, spec.crop_px) == (8, 2.0, 128, 112)
    # the profile's motion view scales with the crop: the whole picture decoded at short side 180
    assert spec.motion_crop == 0.5 and spec.decode_size_hw == (180, 320)
    out = tmp_path / "features"
    stats = extract_features(clip_manifest, out, cfg)
    expected = _expected_windows(shared_clips, 1.0)
    assert expected == {str(shared_clips / c): n for (c, _, _), n in zip(CLIPS, [1, 3, 2, 1], strict=True)}
    assert (stats.total, stats.extracted, stats.failed) == (5, 4, 1)
    assert stats.windows == sum(expected.values()) and stats.frames == 8 * stats.windows

    stored = load_windows(out, key=WindowStoreKey.for_config(cfg))
    assert stored.pooled.shape == (stats.windows, 1024)
    assert stored.per_time.shape == (stats.windows, 1, 1024)  # T' = ceil(8 / 8)
    assert np.isfinite(stored.pooled).all() and stored.pooled.std() > 0.01
    rows = stored.meta.to_pylist()
    assert {r["clip_spec_hash"] for r in rows} == {spec.hash()}
    for path, n in expected.items():
        mine = [r for r in rows if r["path"] == path]
        assert [r["window_index"] for r in mine] == list(range(n)) and {r["num_windows"] for r in mine} == {n}
        assert mine[0]["start_s"] == 0.0
        for r in mine:
            assert len(r["frame_times_s"]) == 8 and abs(r["frame_times_s"][0] - r["start_s"]) < 0.1
            if n > 1:
                assert r["end_s"] - r["start_s"] == pytest.approx(2.0, abs=0.05)
    short = next(r for r in rows if r["path"].endswith("fi034.mp4"))
    assert short["end_s"] == pytest.approx(1.63, abs=0.05)  # a clip shorter than a window: the whole clip
    assert sorted({r["label"] for r in rows}) == [0, 1]
    errors = pq.read_table(out / ERRORS_FILE).to_pylist()
    assert len(errors) == 1 and errors[0]["path"].endswith("broken.mp4")

    # the pipeline's windows equal the clip backbone applied directly to sample_windows' output
    model = create_clip_backbone("i3d_kinetics400", spec=spec)
    path = str(shared_clips / CLIPS[1][0])
    w = sample_windows(path, window_s=2.0, hop_s=1.0, num_frames=8, size_hw=spec.decode_size_hw, resize="center_crop")
    with torch.inference_mode():
        ref = model(w.frames)
    mine = [i for i, r in enumerate(rows) if r["path"] == path]
    np.testing.assert_allclose(stored.pooled[mine], ref.pooled.numpy(), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(stored.per_time[mine], ref.per_time.numpy(), atol=2e-2, rtol=1e-2)
    # each window carries the flow statistics of its own time span, as the live path computes them
    from nexara.motion import MOTION_DIM, window_motion

    assert stored.motion is not None and stored.motion.shape == (stats.windows, MOTION_DIM)
    bounds = list(zip(w.start_s.tolist(), w.end_s.tolist(), strict=True))
    np.testing.assert_array_equal(stored.motion[mine], window_motion(path, bounds))
    assert not np.array_equal(stored.motion[mine[0]], stored.motion[mine[1]])

    again = extract_features(clip_manifest, out, cfg)
    assert (again.extracted, again.skipped, again.windows) == (0, 4, 0)
    with pytest.raises(NexaraError, match="no feature store"):
        load_features(out)  # the frame-backbone reader does not see window parts

    # another hop is another key: extracted again, stored beside the first
    cfg_hop = parse_config(CONFIG + "  window_hop_s: 0.5\n")
    third = extract_features(clip_manifest, out, cfg_hop)
    assert third.extracted == 4
    assert third.windows == sum(_expected_windows(shared_clips, 0.5).values()) > stats.windows
    assert len(load_windows(out).meta) == stats.windows + third.windows
