"""Evidence clips of monitor-wall cells (actors.recorder + actors.clip_encode): on a real composed 2x2 wall
of shared CCTV clips, a cropped request gives the cell alone, re-encoded as H.264 MP4 with the moov atom
before mdat (a browser starts playing at once), the size of the cell, showing that cell and no other,
with the whole-wall remux kept beside it; bad boxes are refused."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

from actors.clip_encode import encode_cell_clip
from actors.compose import compose_wall_video
from actors.grid import wall_boxes
from actors.recorder import ClipRecorder
from nexara.errors import InvalidInputError

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from media_factory import find_box  # noqa: E402

pytestmark = pytest.mark.unit

CELL_HW = (120, 160)
FPS = 10
CELLS = ["noFight/nofi001.mp4", "noFight/nofi002.mp4", "fight/fi001.mp4", "noFight/nofi003.mp4"]


@pytest.fixture(scope="module")
def wall(shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2x2 wall (4 px separators, 332x252) of four different shared clips, 8 s, keyframe every 1 s."""
    out = tmp_path_factory.mktemp("wall") / "wall.mp4"
    compose_wall_video(
        [[shared_clips / c] for c in CELLS], out, rows=2, cols=2, cell_hw=CELL_HW, fps=FPS, duration_s=8.0
    )
    return out


def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def feed(rec: ClipRecorder, path: Path) -> None:
    """One connection, as the stream reader does it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rec.start_stream(stream)
        origin = stream.start_time or 0
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            assert packet.time_base is not None
            rec.push(packet, float((packet.pts - origin) * packet.time_base))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_cropped_request_gives_the_cell_as_faststart_h264_beside_the_wall_remux(tmp_path: Path, wall: Path) -> None:
    boxes = wall_boxes(*CELL_HW, 2, 2)
    box = boxes[2]  # row 1, col 0: the fight clip
    crop = (box.x0, box.y0, box.x1, box.y1)
    rec = ClipRecorder(tmp_path / "clips", pre_s=2.0, post_s=2.0)
    path = rec.request("wall-r1c0-4000-1", 4.0, crop=crop)
    assert path == tmp_path / "clips" / "wall-r1c0-4000-1.mp4"
    feed(rec, wall)
    rec.flush()  # waits for the encode
    assert rec.is_ready("wall-r1c0-4000-1") and path.is_file()
    assert rec.clip_path("wall-r1c0-4000-1") == path
    wall_clip = rec.wall_clip_path("wall-r1c0-4000-1")
    assert wall_clip == tmp_path / "clips" / "wall-r1c0-4000-1-wall.mp4" and wall_clip.is_file()
    assert not list(path.parent.glob(".*partial"))
    stats = rec.stats()
    assert stats["clips_written"] == 1 and stats["pending"] == 0 and stats["clips_failed"] == 0
    rec.close()

    data = path.read_bytes()
    moov, mdat = find_box(data, b"moov"), find_box(data, b"mdat")
    assert moov is not None and mdat is not None and moov[0] < mdat[0]  # faststart
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "h264" and vs.codec_context.pix_fmt == "yuv420p"
        assert (vs.codec_context.width, vs.codec_context.height) == (box.width_px, box.height_px)

    cell_frames = decode_rgb(path)
    wall_frames = decode_rgb(wall_clip)
    # From the keyframe at 2 s through 6 s: the remux and the cell clip hold the same frames.
    assert len(cell_frames) == len(wall_frames) == 41
    for cf, wf in zip(cell_frames[::10], wall_frames[::10], strict=True):
        right = mean_abs_diff(cf, wf[box.y0 : box.y1, box.x0 : box.x1])
        others = [mean_abs_diff(cf, wf[b.y0 : b.y1, b.x0 : b.x1]) for b in boxes if b != box]
        assert right < 6.0, f"cell clip differs from its cell by {right:.1f} per pixel"
        assert min(others) > 3 * right + 5, f"cell clip looks like another cell ({others} vs {right})"


def test_an_uncropped_request_is_still_the_bit_exact_remux(tmp_path: Path, wall: Path) -> None:
    rec = ClipRecorder(tmp_path, pre_s=1.0, post_s=1.0)
    path = rec.request("wall-3000-1", 3.0)
    feed(rec, wall)
    rec.close()
    assert path == tmp_path / "wall-3000-1.mp4" and rec.wall_clip_path("wall-3000-1") is None
    clip, source = decode_rgb(path), decode_rgb(wall)
    assert np.array_equal(clip[0], source[2 * FPS])  # the keyframe at 2 s, untouched


def test_odd_sized_cell_loses_its_last_pixel_row_and_column(tmp_path: Path, wall: Path) -> None:
    w, h = encode_cell_clip(wall, tmp_path / "odd.mp4", (4, 4, 4 + 161, 4 + 121))
    assert (w, h) == (160, 120)
    assert len(decode_rgb(tmp_path / "odd.mp4")) == 8 * FPS


def test_bad_crop_boxes_are_refused(tmp_path: Path, wall: Path) -> None:
    rec = ClipRecorder(tmp_path)
    for bad in [(0, 0, 1, 10), (-1, 0, 10, 10), (0, 0, 10), "0,0,10,10", (0.0, 0, 10, 10)]:
        with pytest.raises(InvalidInputError, match="crop box"):
            rec.request("e", 1.0, crop=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="outside the 332x252 frame"):
        encode_cell_clip(wall, tmp_path / "x.mp4", (200, 200, 400, 300))
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*partial"))
    rec.close()


def test_a_failed_cell_encode_fails_the_clip_and_keeps_the_wall(tmp_path: Path, wall: Path) -> None:
    rec = ClipRecorder(tmp_path, pre_s=1.0, post_s=1.0)
    path = rec.request("big-3000-1", 3.0, crop=(0, 0, 1000, 1000))  # larger than the 332x252 wall
    feed(rec, wall)
    rec.flush()
    assert rec.status("big-3000-1") == "failed" and rec.clip_path("big-3000-1") is None
    assert not path.exists() and (tmp_path / "big-3000-1-wall.mp4").is_file()
    assert rec.stats()["clips_failed"] == 1
    rec.close()
