"""`nexara demo-wall --cell`: a 2x2 wall whose cells play their own playlists (the demo's fight cell)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexara.cli import main
from nexara.media import probe

pytestmark = pytest.mark.unit


def test_demo_wall_cells_play_their_own_playlists(
    shared_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = [str(shared_clips / "noFight" / n) for n in ("nofi002.mp4", "nofi007.mp4", "nofi108.mp4")]
    fight = str(shared_clips / "fight" / "fi034.mp4")
    out = tmp_path / "wall.mp4"
    cells = [*(["--cell", q] for q in quiet), ["--cell", f"{quiet[0]},{fight}"]]
    args = ["demo-wall", str(out), "--seconds", "5", "--cell-size", "160x96", "--fps", "8"]
    assert main([*args, *(a for c in cells for a in c)]) == 0
    info = probe(out)
    assert (info.width, info.height) == (332, 204) and info.fps == pytest.approx(8)  # 2 cells + 3 borders of 4 px
    text = capsys.readouterr().out
    # the fight cell plays its ordinary clip, then the fight: the printed playlist says where
    assert "cell r1c1: nofi002.mp4 0.0-" in text and "fi034.mp4" in text.split("cell r1c1:")[1]


def test_demo_wall_refuses_a_wrong_cell_count(
    shared_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = str(shared_clips / "noFight" / "nofi002.mp4")
    assert main(["demo-wall", str(tmp_path / "w.mp4"), "--cell", clip, "--cell", clip]) == 2
    assert "takes 4 --cell playlists, got 2" in capsys.readouterr().err
    missing = str(tmp_path / "nope.mp4")
    assert main(["demo-wall", str(tmp_path / "w.mp4"), *(a for _ in range(4) for a in ("--cell", missing))]) == 2
    assert "clips not found" in capsys.readouterr().err
