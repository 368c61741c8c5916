"""The model runtime (nexara.runtime): it builds only the backbone the members read, scores a clip model's
windows on a real clip (one score per window, the clip at the maximum), computes the motion statistics as
training did, refuses an incompatible manifest at load and bad inputs with a clear error.

Real clips, real I3D weights (the cache `make setup` fills), small random-weight heads over real feature
sizes (the heads' values do not matter here, only what the runtime builds and feeds them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_factory import SMALL_CLIP, write_model

from nexara.errors import InvalidInputError, MediaError, ModelError
from nexara.media import probe, window_indices
from nexara.model_manifest import MANIFEST_FILE
from nexara.motion import MOTION_DIM, clip_motion, window_motion
from nexara.runtime import ModelRuntime

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _edit_manifest(folder: Path, **changes: Any) -> None:
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    path.write_text(json.dumps(data))


def _copy_model(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in src.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


@pytest.fixture(scope="module")
def fight_clip(shared_clips: Path) -> str:
    return str(shared_clips / "fight" / "fi063.mp4")  # 4.7 s: three 2-s windows at a 1-s hop


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("clipmodel"), clip=SMALL_CLIP, inputs=("appearance", "motion"))


def _no_cnn(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a backbone was built for a model none of whose members reads it")

    monkeypatch.setattr("nexara.backbones.create_backbone", refuse)
    monkeypatch.setattr("nexara.backbones.create_clip_backbone", refuse)


def test_motion_only_model_builds_no_backbone(fight_clip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cnn(monkeypatch)
    rt = ModelRuntime.from_manifest(device="cpu")  # the shipped model: every member reads "motion"
    assert rt.reads == {"motion"}
    scored = rt.predict(fight_clip)
    assert rt.built == ()
    v = scored.verdict()
    assert 0.0 <= v["violence_probability"] <= 1.0 and set(v["members"]) == {m.name for m in rt.manifest.members}
    # the whole clip's statistics are clip_motion's (what training stored), bit for bit
    np.testing.assert_array_equal(rt.decode(fight_clip).motion[0], clip_motion(fight_clip))
    info = probe(fight_clip)
    assert scored.duration_s == pytest.approx(info.duration_s)
    assert abs(scored.frames_used - info.duration_s * rt.motion_spec.fps) <= 2  # frames at the motion rate
    # the live path's frame requests cost nothing: zero-width features, still nothing built
    assert rt.embed_frames(np.zeros((3, 224, 224, 3), np.uint8)).shape == (3, 0)
    assert rt.built == ()


def test_motion_only_predict_imports_no_cnn_library(fight_clip: str) -> None:
    code = (
        "import sys; from nexara.predict import Predictor; "
        f"r = Predictor(device='cpu').predict_source({fight_clip!r}); assert 'error' not in r, r; "
        "print(sorted(m for m in ('torchvision', 'timm', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_frame_model_builds_the_frame_backbone_only_when_used(fight_clip: str, tmp_path: Path) -> None:
    rt = ModelRuntime.from_manifest(write_model(tmp_path, clip=None, inputs=("appearance",)), device="cpu")
    assert rt.reads == {"frame"} and rt.built == ()
    scored = rt.predict(fight_clip)
    assert rt.built == ("frame_backbone",)
    assert scored.frames_used == 16 and len(scored.windows) == 1


def test_clip_model_scores_each_window_of_a_real_clip(clip_model: Path, fight_clip: str) -> None:
    rt = ModelRuntime.from_manifest(clip_model, device="cpu")
    assert rt.reads == {"clip", "motion"} and rt.built == ()
    scored = rt.predict(fight_clip)
    assert rt.built == ("clip_backbone",)
    info = probe(fight_clip)
    _, bounds = window_indices(
        info.frame_count, info.fps, window_s=SMALL_CLIP.window_s, hop_s=rt.decoder.window_hop_s, num_frames=8
    )
    assert len(scored.windows) == len(bounds) >= 2  # several windows, one score each
    np.testing.assert_allclose(scored.start_s, bounds[:, 0] / info.fps)
    probs = scored.windows.probability
    assert scored.verdict()["violence_probability"] == pytest.approx(round(float(probs.max()), 6))
    assert scored.frames_used == len(bounds) * SMALL_CLIP.num_frames  # the frames the clip backbone read

    # each window carries the statistics of its own time span, as the window store computed them
    decoded = rt.decode(fight_clip)
    assert decoded.windows is not None and decoded.windows.shape[:2] == (len(bounds), 8)
    spans = list(zip(decoded.start_s.tolist(), decoded.end_s.tolist(), strict=True))
    np.testing.assert_array_equal(decoded.motion, window_motion(fight_clip, spans))
    assert not np.allclose(decoded.motion[0], decoded.motion[-1])

    # the stages apart (as the Serve app runs them) give the same scores
    feats = rt.embed_windows(decoded.windows)
    assert feats.per_time.shape[0] == len(bounds) and feats.pooled.shape == (len(bounds), 1024)
    apart = rt.score(feats.per_time, decoded.motion)
    np.testing.assert_allclose(apart.probability, probs, atol=1e-5)


def test_clip_model_hop_and_aggregation_come_from_the_manifest(
    clip_model: Path, fight_clip: str, tmp_path: Path
) -> None:
    folder = _copy_model(clip_model, tmp_path / "m")
    _edit_manifest(folder, window_hop_s=0.5, clip_aggregation="mean")
    rt = ModelRuntime.from_manifest(folder, device="cpu")
    scored = rt.predict(fight_clip)
    info = probe(fight_clip)
    _, bounds = window_indices(info.frame_count, info.fps, window_s=2.0, hop_s=0.5, num_frames=8)
    assert len(scored.windows) == len(bounds) > 3
    v = scored.verdict()
    assert v["violence_probability"] == pytest.approx(float(scored.windows.probability.mean()), abs=1e-6)
    assert v["violent"] == (v["violence_probability"] >= rt.manifest.threshold)


def test_clip_model_through_nexara_predict(clip_model: Path, fight_clip: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nexara.cli", "predict", fight_clip, "--model", str(clip_model), "--format", "jsonl"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["model_version"] == "test-runtime-1" and set(rec["members"]) == {"m_appearance", "m_motion"}


def test_a_video_too_long_to_hold_is_refused_before_decoding(clip_model: Path, fight_clip: str, tmp_path: Path) -> None:
    """A clip model holds a video's windows at once in predict: above media.max_decode_mb the video is an
    error record that says why and what to use instead (here a 1-MiB budget against 3 windows of 8 frames
    at 128 px, 1.1 MiB), not an out-of-memory crash on a long recording."""
    config = tmp_path / "small-budget.yaml"
    config.write_text("media:\n  max_decode_mb: 1\n")
    cmd = [sys.executable, "-m", "nexara.cli", "--config", str(config), "predict", fight_clip]
    out = subprocess.run(
        [*cmd, "--model", str(clip_model), "--format", "jsonl"], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    rec = json.loads(out.stdout)
    assert rec["error"] == "bad_media"
    assert "3 windows of 8 frames" in rec["reason"] and "media.max_decode_mb (1)" in rec["reason"]
    assert "nexara watch" in rec["reason"]


def test_mismatched_clip_spec_fails_at_load(clip_model: Path, tmp_path: Path) -> None:
    folder = _copy_model(clip_model, tmp_path / "m")
    _edit_manifest(folder, clip__num_frames=16, frames_per_clip=16)  # recipe edited, its hash left as it was
    with pytest.raises(ModelError, match=r"records clip spec hash .* but its fields hash to"):
        ModelRuntime.from_manifest(folder, device="cpu")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"clip": None}, "is a clip backbone but the manifest records no clip spec"),
        ({"feature_dim": 512}, "trained on 512-d features, backbone i3d_kinetics400 gives 1024"),
        ({"backbone": "efficientnet_lite0"}, "records a clip spec but efficientnet_lite0 is a frame backbone"),
    ],
)
def test_incompatible_backbone_fails_at_load(
    clip_model: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    folder = _copy_model(clip_model, tmp_path / "m")
    _edit_manifest(folder, **changes)
    with pytest.raises(ModelError, match=message):
        ModelRuntime.from_manifest(folder, device="cpu")


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    rt = ModelRuntime.from_manifest(device="cpu")
    with pytest.raises(InvalidInputError, match="reads motion statistics; none given"):
        rt.score(np.zeros((1, 16, 1280), np.float32), None)
    with pytest.raises(InvalidInputError, match=r"expected motion input \(N, 1215\), got \(2, 7\)"):
        rt.score(None, np.zeros((2, 7), np.float32))
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        rt.score(None, np.full((1, MOTION_DIM), np.nan, np.float32))
    with pytest.raises(InvalidInputError, match=r"expected \(n, 224, 224, 3\) uint8 frames"):
        rt.embed_frames(np.zeros((2, 224, 224, 3), np.float32))
    scores = rt.score(None, np.zeros((3, MOTION_DIM), np.float32))  # appearance: no member reads it
    assert len(scores) == 3 and len(scores.verdicts()) == 3
    with pytest.raises(ModelError, match="reads no clip backbone features"):
        rt.embed_windows(np.zeros((1, 8, 112, 112, 3), np.uint8))
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    with pytest.raises(MediaError):
        rt.predict(str(not_video))


def test_wrong_window_length_is_refused(clip_model: Path) -> None:
    rt = ModelRuntime.from_manifest(clip_model, device="cpu")
    with pytest.raises(InvalidInputError, match=r"expected \(n, 8, H, W, 3\) uint8 windows \(T=8"):
        rt.embed_windows(np.zeros((1, 16, 128, 128, 3), np.uint8))
    assert rt.built == ()
