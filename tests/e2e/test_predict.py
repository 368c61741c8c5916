"""`nexara predict` with the default model of the test run (the motion model, see tests/conftest.py) on real shared
clips, a corrupt file and a directory (the shipped clip model: tests/e2e/test_default_model.py)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nexara.model_manifest import read_manifest
from nexara.motion import MotionSpec
from nexara.voting import DEFAULT_MODEL_DIR

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {
    "path",
    "violence_probability",
    "violent",
    "confidence",
    "members",
    "frames_used",
    "duration_s",
    "latency_ms",
    "model_version",
}


def _predict(*args: str, timeout: int = 600) -> tuple[int, list[dict], str]:
    r = subprocess.run(
        [sys.executable, "-m", "nexara.cli", "predict", *args, "--format", "jsonl"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    records = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return r.returncode, records, r.stderr


@pytest.fixture(scope="module")
def clips(shared_clips: Path) -> dict[str, list[Path]]:
    with (shared_clips / "clips.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {
        "fight": [shared_clips / r["clip"] for r in rows if r["label"] == "fight"],
        "calm": [shared_clips / r["clip"] for r in rows if r["label"] == "noFight"],
    }


def test_default_model_is_shipped_and_valid() -> None:
    man = read_manifest(DEFAULT_MODEL_DIR)
    assert man.members and 0 < man.threshold < 1
    assert man.backbone == "efficientnet_lite0"


def test_predict_real_clips_and_corrupt_file(clips: dict[str, list[Path]], tmp_path: Path) -> None:
    fight, calm = clips["fight"][0], clips["calm"][0]
    corrupt = tmp_path / "corrupt.mp4"
    data = fight.read_bytes()
    corrupt.write_bytes(data[: len(data) // 4])
    rc, records, stderr = _predict(str(fight), str(corrupt), str(calm))
    assert rc == 1, stderr  # non-zero at the end because one input failed ...
    assert len(records) == 3  # ... but every input got a record, in order
    assert records[1]["path"] == str(corrupt) and records[1]["error"] and records[1]["reason"]
    man = read_manifest(DEFAULT_MODEL_DIR)
    for rec in (records[0], records[2]):
        assert REQUIRED <= set(rec), rec
        p = rec["violence_probability"]
        assert 0.0 <= p <= 1.0
        assert rec["violent"] == (p >= man.threshold)
        assert rec["confidence"] in {"HIGH", "MEDIUM", "LOW"}
        assert set(rec["members"]) == {m.name for m in man.members}
        # every member of the default model reads motion statistics: the frames read are the motion frames
        # (no frame is sampled for a backbone no member reads)
        assert abs(rec["frames_used"] - rec["duration_s"] * MotionSpec().fps) <= 2
    assert "Traceback" not in stderr


def test_predict_directory_expands_to_videos(clips: dict[str, list[Path]], tmp_path: Path) -> None:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(clips["fight"][1], d / "a.mp4")
    shutil.copy(clips["calm"][1], d / "sub" / "b.mp4")
    (d / "notes.txt").write_text("not a video")
    rc, records, stderr = _predict(str(d))
    assert rc == 0, stderr
    assert [Path(r["path"]).name for r in records] == ["a.mp4", "b.mp4"]


def test_model_separates_fights_from_calm_scenes(clips: dict[str, list[Path]]) -> None:
    """Behaviour check on a handful of real clips (training clips: this is not an accuracy figure)."""
    fights, calms = clips["fight"][10:14], clips["calm"][10:14]
    rc, records, stderr = _predict(*map(str, fights + calms), "--ray-threshold", "100")
    assert rc == 0, stderr
    p = [r["violence_probability"] for r in records]
    assert sum(p[:4]) / 4 > sum(p[4:]) / 4


def test_ray_batch_path_matches_single_process(clips: dict[str, list[Path]]) -> None:
    inputs = [str(c) for c in clips["fight"][20:22] + clips["calm"][20:21]]
    rc1, single, _ = _predict(*inputs, "--ray-threshold", "100")
    rc2, batched, stderr = _predict(*inputs, "--ray-threshold", "2")
    assert rc1 == rc2 == 0, stderr
    assert [r["path"] for r in batched] == inputs
    for a, b in zip(single, batched, strict=True):
        assert abs(a["violence_probability"] - b["violence_probability"]) < 0.02
        assert a["violent"] == b["violent"] or abs(a["violence_probability"] - a.get("threshold", 0.5)) < 0.02


def test_no_inputs_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, stderr = _predict(str(empty))
    assert rc == 2 and "no inputs" in stderr and "Traceback" not in stderr
