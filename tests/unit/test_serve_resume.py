"""`nexara serve --resume`: the newest run folder that keeps cameras added over the API is served on again
(a plain `nexara serve` starts a new run folder and says where the kept cameras are)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.camera_store import CameraStore
from nexara.config import parse_config
from serve.builder import latest_run_with_cameras

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _keep(run: Path, ids: list[str], mtime: float) -> None:
    run.mkdir(parents=True)
    store = CameraStore.of_run_dir(run)
    store.save({i: {"id": i, "url": f"/videos/{i}.mp4"} for i in ids})
    os.utime(store.path, (mtime, mtime))


def test_newest_run_folder_with_cameras(tmp_path: Path) -> None:
    cfg = parse_config(f"sinks:\n  run_dir: {tmp_path}\n")
    assert latest_run_with_cameras(cfg) is None  # nothing kept yet
    _keep(tmp_path / "20261201T000000Z", ["gate"], 1_000)
    _keep(tmp_path / "20261202T000000Z", ["lobby", "yard"], 2_000)
    _keep(tmp_path / "20261203T000000Z", [], 3_000)  # every camera was removed: nothing to resume
    (tmp_path / "20261204T000000Z").mkdir()  # a later run without API cameras
    assert latest_run_with_cameras(cfg) == (tmp_path / "20261202T000000Z").resolve()


def test_resume_without_kept_cameras_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "nexara.yaml"
    cfg.write_text(f"sinks:\n  run_dir: {tmp_path / 'runs'}\n")
    out = subprocess.run(
        [sys.executable, "-m", "nexara.cli", "--config", str(cfg), "serve", "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "no run folder under" in out.stderr and "cameras.json" in out.stderr
    assert "Traceback" not in out.stderr
