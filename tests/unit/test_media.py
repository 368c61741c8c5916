"""nexara.media: probing, exact clip sampling, resize policies, corruption and typed errors.

Synthetic videos are written into tmp dirs at test time (tests/media_factory.py); real CCTV clips
are read from ../shared/data/surveillance-fight (skipped when absent).
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

from nexara.errors import (
    EmptyVideoError,
    MediaError,
    NotAVideoError,
    NoVideoStreamError,
    SourceUnreachableError,
    TruncatedVideoError,
    UnsupportedCodecError,
)
from nexara.media import (
    DecodedFrame,
    SampledClip,
    VideoInfo,
    iter_frames,
    open_container,
    probe,
    resize_frame,
    sample_clip,
    sample_indices,
)

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from media_factory import (  # noqa: E402
    BLUE_BAR,
    corrupt_bytes,
    corrupt_video_packets,
    frame_index,
    index_color,
    index_frame,
    truncate,
    write_audio_only,
    write_empty_video,
    write_h264_video,
    write_indexed_video,
    write_text_file,
    write_unknown_codec_video,
    write_video,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CLIPS = Path(os.environ.get("NEXARA_SHARED", REPO / ".." / "shared")).resolve() / "data" / "surveillance-fight"
REAL_CLIPS = ["fight/fi001.mp4", "noFight/nofi001.mp4", "fight/fi077.mp4"]  # 480x360+audio, 1080p no audio


def _clip(name: str) -> Path:
    path = CLIPS / name
    if not path.is_file():
        pytest.skip(f"shared CCTV clips not found at {CLIPS} (set NEXARA_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def h264(media_dir: Path) -> Path:
    """120 frames, 30 fps, keyframe every 10 frames, moov at the end (the PyAV/FFmpeg default)."""
    return write_h264_video(media_dir / "h264.mp4", 120, 30, (96, 128), gop=10)


def _decode_all(path: Path) -> list[np.ndarray]:
    """Reference: every frame of a clean file at native size, plain PyAV loop."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _assert_names_input(exc: pytest.ExceptionInfo[MediaError], source: object) -> None:
    assert str(source) in str(exc.value), f"message does not name the input: {exc.value}"


# --- sampling: exact index hits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_count", "num_frames", "expected"),
    [(10, 4, [0, 3, 6, 9]), (3, 5, [0, 0, 1, 2, 2]), (1, 3, [0, 0, 0]), (100, 1, [0])],
)
def test_sample_indices_formula(frame_count: int, num_frames: int, expected: list[int]) -> None:
    got = sample_indices(frame_count, num_frames)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert np.array_equal(got, np.linspace(0, frame_count - 1, num_frames).round().astype(np.int64))


def test_sample_indices_rejects_empty() -> None:
    with pytest.raises(ValueError):
        sample_indices(0, 16)


@pytest.mark.parametrize(
    ("frame_count", "num_frames"),
    [(50, 16), (16, 16), (7, 16), (1, 4), (97, 5), (300, 16)],
)
def test_sample_clip_hits_exact_indices(media_dir: Path, frame_count: int, num_frames: int) -> None:
    path = write_indexed_video(media_dir / f"idx_{frame_count}.mkv", frame_count, 30, (24, 32))
    clip = sample_clip(path, num_frames=num_frames, size_hw=None)
    expected = sample_indices(frame_count, num_frames)
    assert isinstance(clip, SampledClip)
    assert clip.frames.shape == (num_frames, 24, 32, 3) and clip.frames.dtype == np.uint8
    assert [frame_index(f) for f in clip.frames] == expected.tolist()
    for row, idx in zip(clip.frames, expected.tolist(), strict=True):
        assert np.array_equal(row, index_frame(idx, (24, 32)))
    assert clip.indices.dtype == np.int64 and np.array_equal(clip.indices, expected)
    assert clip.times_s.dtype == np.float64
    np.testing.assert_allclose(clip.times_s, expected / 30, atol=1e-3)  # Matroska stores ms
    assert clip.info.frame_count == frame_count  # counted: Matroska has no frame count
    assert clip.decoded_frames == frame_count and clip.corrupt_packets == 0


@pytest.mark.parametrize(("codec", "suffix"), [("png", ".mov"), ("libx264rgb", ".mp4"), ("ffv1", ".avi")])
def test_sample_clip_exact_in_other_containers(media_dir: Path, codec: str, suffix: str) -> None:
    path = write_indexed_video(media_dir / f"idx_{codec}{suffix}", 40, 25, (24, 32), codec=codec)
    clip = sample_clip(path, num_frames=9, size_hw=(16, 16))
    assert [frame_index(f) for f in clip.frames] == sample_indices(40, 9).tolist()
    assert clip.frames.shape == (9, 16, 16, 3)


def test_bytes_input_matches_path(media_dir: Path) -> None:
    path = write_indexed_video(media_dir / "bytes.mkv", 33, 30, (24, 32))
    from_path = sample_clip(path, num_frames=8, size_hw=(20, 20))
    from_bytes = sample_clip(path.read_bytes(), num_frames=8, size_hw=(20, 20))
    assert np.array_equal(from_path.frames, from_bytes.frames)
    assert np.array_equal(from_path.indices, from_bytes.indices)
    assert probe(path.read_bytes()) == probe(path)


def test_bframes_follow_presentation_order(media_dir: Path) -> None:
    """With B-frames decode order != presentation order; indices must still be presentation order."""
    path = write_h264_video(media_dir / "bframes.mp4", 60, 30, (48, 64), gop=12, bframes=2)
    reference = _decode_all(path)
    clip = sample_clip(path, num_frames=10, size_hw=None)
    assert np.array_equal(clip.indices, sample_indices(60, 10))
    for row, idx in zip(clip.frames, clip.indices.tolist(), strict=True):
        assert np.array_equal(row, reference[idx])
    assert np.all(np.diff(clip.times_s) > 0)


# --- resize policies -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["squash", "letterbox", "center_crop"])
@pytest.mark.parametrize("src_hw", [(48, 96), (96, 48), (32, 32)])
def test_resize_frame_shapes(policy: str, src_hw: tuple[int, int]) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    out = resize_frame(rgb, (40, 30), policy)  # type: ignore[arg-type]
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8


def test_letterbox_pads_black_centred() -> None:
    wide = np.full((40, 120, 3), 255, dtype=np.uint8)
    out = resize_frame(wide, (60, 60), "letterbox")  # fitted 20x60, bars of 20 rows
    assert np.all(out[:19] == 0) and np.all(out[-19:] == 0)
    assert np.all(out[21:39] == 255)
    tall = np.full((120, 40, 3), 255, dtype=np.uint8)
    out = resize_frame(tall, (60, 60), "letterbox")
    assert np.all(out[:, :19] == 0) and np.all(out[:, -19:] == 0)
    assert np.all(out[:, 21:39] == 255)


def test_center_crop_keeps_centre_and_squash_keeps_everything() -> None:
    thirds = np.zeros((80, 240, 3), dtype=np.uint8)
    thirds[:, :80, 0] = 255  # red | green | blue
    thirds[:, 80:160, 1] = 255
    thirds[:, 160:, 2] = 255
    crop = resize_frame(thirds, (40, 40), "center_crop")  # covers at 40x120, keeps the middle third
    assert np.all(crop[:, 2:-2, 1] == 255) and np.all(crop[:, 2:-2, [0, 2]] == 0)
    squash = resize_frame(thirds, (40, 30), "squash")
    assert squash[20, 2, 0] == 255 and squash[20, 15, 1] == 255 and squash[20, -3, 2] == 255


def test_resize_rejects_bad_policy_and_input() -> None:
    with pytest.raises(ValueError, match="resize policy"):
        resize_frame(np.zeros((4, 4, 3), np.uint8), (2, 2), "stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uint8"):
        resize_frame(np.zeros((4, 4, 3), np.float32), (2, 2), "squash")


def test_sample_clip_resize_policies_on_video(media_dir: Path) -> None:
    path = write_indexed_video(media_dir / "wide.mkv", 20, 30, (24, 64))
    expected = sample_indices(20, 4).tolist()
    for policy in ("squash", "letterbox", "center_crop"):
        clip = sample_clip(path, num_frames=4, size_hw=(32, 32), resize=policy)  # type: ignore[arg-type]
        assert clip.frames.shape == (4, 32, 32, 3)
        assert [frame_index(f) for f in clip.frames] == expected
    letterboxed = sample_clip(path, num_frames=4, size_hw=(32, 32), resize="letterbox").frames
    assert np.all(letterboxed[:, :3] == 0) and np.all(letterboxed[:, -3:] == 0)  # 12-row image, 10-row bars
    assert np.all(letterboxed[:, 16, :, 2] == BLUE_BAR)
    cropped = sample_clip(path, num_frames=4, size_hw=(32, 32), resize="center_crop").frames
    assert np.all(cropped[..., 2] == BLUE_BAR)  # no bars: the crop fills the frame
    assert tuple(cropped[-1, 0, 0]) == index_color(expected[-1])


# --- probe and real clips --------------------------------------------------------------------------


def test_probe_real_clip_metadata() -> None:
    info = probe(_clip("fight/fi001.mp4"))
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.codec) == (480, 360, "h264")
    assert info.fps == pytest.approx(25.0)
    # README: about 2 s (1 to 5 s), 20 to 142 frames, MP4/H.264, many with audio
    assert 20 <= info.frame_count <= 142 and 1.0 <= info.duration_s <= 5.0
    assert info.frame_count == pytest.approx(info.duration_s * info.fps, abs=2)
    assert info.has_audio and "mp4" in info.container


def test_probe_counts_frames_when_metadata_is_missing(media_dir: Path) -> None:
    path = write_indexed_video(media_dir / "count.mkv", 37, 30, (16, 16))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # Matroska: no frame count in the metadata
    info = probe(path)
    assert info.frame_count == 37 and info.fps == pytest.approx(30.0)
    assert (info.width, info.height, info.codec, info.has_audio) == (16, 16, "ffv1", False)
    assert info.duration_s == pytest.approx(37 / 30, abs=0.05)


@pytest.mark.parametrize("name", REAL_CLIPS)
def test_sample_clip_on_real_clips(name: str) -> None:
    path = _clip(name)
    clip = sample_clip(path, num_frames=16, size_hw=(224, 224), resize="squash")
    assert clip.frames.shape == (16, 224, 224, 3) and clip.frames.dtype == np.uint8
    assert np.all(np.diff(clip.times_s) >= 0) and clip.times_s[0] >= 0
    assert np.array_equal(clip.indices, sample_indices(clip.info.frame_count, 16))
    assert clip.corrupt_packets == 0 and clip.decoded_frames == clip.info.frame_count
    assert clip.info == probe(path)
    assert clip.frames.std() > 5  # real pictures, not blank frames


# --- corruption ------------------------------------------------------------------------------------


def test_corrupt_packets_are_skipped_and_indices_stay_true(media_dir: Path, h264: Path) -> None:
    clean = sample_clip(h264, num_frames=16, size_hw=None)
    bad = corrupt_video_packets(h264, [60, 61], out=media_dir / "corrupt_packets.mp4")  # 60: a keyframe
    clip = sample_clip(bad, num_frames=16, size_hw=None)
    targets = sample_indices(120, 16)
    assert clip.frames.shape == (16, 96, 128, 3)
    assert clip.corrupt_packets >= 2 and clip.decoded_frames < 120
    assert np.all(np.diff(clip.indices) >= 0) and np.all(np.abs(clip.indices - targets) <= 10)
    assert not np.array_equal(clip.indices, targets)  # target 63 sits in the lost GOP 60..69
    np.testing.assert_allclose(clip.times_s, clip.indices / 30, atol=1e-6)
    # GOPs before the damage decode exactly as in the clean file, and so do the GOPs after it:
    # a frame's index comes from its timestamp, not from a decode counter.
    for k in [*range(0, 8), *range(9, 16)]:
        assert clip.indices[k] == targets[k]
        assert np.array_equal(clip.frames[k], clean.frames[k]), k


def test_random_byte_flips_in_mdat_still_return_frames(media_dir: Path, h264: Path) -> None:
    bad = corrupt_bytes(h264, 600, seed=3, out=media_dir / "flipped.mp4")
    with av.open(str(bad)) as c:  # PyAV's plain decode loop gives up at the first bad packet
        plain = 0
        with pytest.raises(av.error.FFmpegError):
            for _ in c.decode(video=0):
                plain += 1
    clip = sample_clip(bad, num_frames=16, size_hw=(32, 32))
    assert clip.frames.shape == (16, 32, 32, 3)
    assert clip.corrupt_packets > 0
    assert clip.decoded_frames > plain


def test_iter_frames_counts_corrupt_packets(media_dir: Path, h264: Path) -> None:
    bad = corrupt_video_packets(h264, [30, 75], out=media_dir / "corrupt_iter.mp4")
    frames = iter_frames(bad, fps=None, size_hw=(16, 16))
    got = list(frames)
    assert frames.stats.corrupt_packets == 2
    assert len(got) == frames.stats.decoded_frames == frames.stats.yielded_frames < 120
    assert all(np.diff([f.index for f in got]) == 1)


# --- typed errors ----------------------------------------------------------------------------------


def test_truncated_mp4_raises(media_dir: Path, h264: Path) -> None:
    cut = truncate(h264, 0.6, out=media_dir / "cut.mp4")  # moov sits at the end: gone
    with pytest.raises(TruncatedVideoError, match="moov") as exc:
        sample_clip(cut)
    _assert_names_input(exc, cut)
    with pytest.raises(TruncatedVideoError):
        probe(cut)


def test_truncated_faststart_mp4_raises_unless_allowed(media_dir: Path) -> None:
    full = write_h264_video(media_dir / "faststart.mp4", 120, 30, (96, 128), gop=10, faststart=True)
    cut = truncate(full, 0.5, out=media_dir / "faststart_cut.mp4")  # index intact, data half gone
    with pytest.raises(TruncatedVideoError, match="cut short") as exc:
        sample_clip(cut)
    _assert_names_input(exc, cut)
    clip = sample_clip(cut, num_frames=8, size_hw=(32, 32), allow_truncated=True)
    assert clip.frames.shape == (8, 32, 32, 3) and 0 < clip.info.frame_count < 120


def test_zero_frame_video_raises_empty(media_dir: Path) -> None:
    path = write_empty_video(media_dir / "empty.avi")
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1  # a video stream, but no packet
    with pytest.raises(EmptyVideoError) as exc:
        sample_clip(path)
    _assert_names_input(exc, path)
    assert probe(path).frame_count == 0
    with pytest.raises(EmptyVideoError):
        list(iter_frames(path, fps=None))


@pytest.mark.parametrize("suffix", [".wav", ".m4a"])
def test_audio_only_raises_no_video_stream(media_dir: Path, suffix: str) -> None:
    path = write_audio_only(media_dir / f"audio{suffix}")
    with pytest.raises(NoVideoStreamError, match="no video stream") as exc:
        sample_clip(path)
    _assert_names_input(exc, path)
    with pytest.raises(NoVideoStreamError):
        probe(path)


def test_not_a_video(media_dir: Path) -> None:
    text = write_text_file(media_dir / "notes.mp4")
    with pytest.raises(NotAVideoError, match="text") as exc:
        sample_clip(text)
    _assert_names_input(exc, text)
    fake_png = media_dir / "photo.png"
    fake_png.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(NotAVideoError) as exc:
        sample_clip(fake_png)
    _assert_names_input(exc, fake_png)
    with pytest.raises(NotAVideoError):
        sample_clip(b"definitely not a video" * 10)
    with pytest.raises(NotAVideoError):
        probe(b"")


def test_real_still_image_is_not_a_video(media_dir: Path) -> None:
    path = media_dir / "still.png"
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 24, "rgb24"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(index_frame(3, (24, 32)))), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(NotAVideoError, match="still image") as exc:
        probe(path)
    _assert_names_input(exc, path)


def test_unsupported_codec(media_dir: Path) -> None:
    path = write_unknown_codec_video(media_dir / "unknown.avi")
    with pytest.raises(UnsupportedCodecError, match="decoder") as exc:
        sample_clip(path)
    _assert_names_input(exc, path)


def test_missing_path_is_unreachable(media_dir: Path) -> None:
    missing = media_dir / "nope" / "missing.mp4"
    with pytest.raises(SourceUnreachableError, match="no such file") as exc:
        sample_clip(missing)
    _assert_names_input(exc, missing)
    with pytest.raises(SourceUnreachableError):
        iter_frames(str(missing), fps=5)


def test_unreachable_url_fails_fast() -> None:
    url = "http://127.0.0.1:9/x.mp4"
    started = time.monotonic()
    with pytest.raises(SourceUnreachableError) as exc:
        sample_clip(url, timeout_s=2)
    assert time.monotonic() - started < 10
    _assert_names_input(exc, url)


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections (kernel backlog) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_silent_server_times_out(silent_server: int, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{silent_server}/cam.mp4"
    started = time.monotonic()
    with pytest.raises(SourceUnreachableError, match="timed out") as exc:
        probe(url, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 10
    _assert_names_input(exc, url)


@pytest.fixture(scope="module")
def http_root(media_dir: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server (no Range support) over a folder: (base URL, folder)."""
    root = media_dir / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_http_sources(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    write_indexed_video(root / "idx.mkv", 40, 30, (24, 32))
    write_h264_video(root / "clip.mp4", 45, 30, (48, 64))
    clip = sample_clip(f"{base}/idx.mkv", num_frames=8, size_hw=(16, 16), timeout_s=5)
    assert [frame_index(f) for f in clip.frames] == sample_indices(40, 8).tolist()
    clip = sample_clip(f"{base}/clip.mp4", num_frames=8, size_hw=(16, 16), timeout_s=5)
    assert np.array_equal(clip.indices, sample_indices(45, 8)) and clip.info.frame_count == 45
    with pytest.raises(SourceUnreachableError, match="404") as exc:
        probe(f"{base}/missing.mp4", timeout_s=5)
    _assert_names_input(exc, f"{base}/missing.mp4")


def test_live_urls_hide_passwords_and_refuse_sample_clip() -> None:
    url = "rtsp://admin:hunter2@127.0.0.1:9/stream1"
    with pytest.raises(MediaError, match="live stream") as exc:
        sample_clip(url)
    assert "hunter2" not in str(exc.value) and "admin:***@127.0.0.1:9/stream1" in str(exc.value)
    with pytest.raises(SourceUnreachableError) as exc2:
        iter_frames(url, fps=2, timeout_s=2)
    assert "hunter2" not in str(exc2.value)


def test_open_container_yields_checked_container(media_dir: Path) -> None:
    path = write_indexed_video(media_dir / "open.mkv", 5, 30, (16, 16))
    with open_container(path) as container:
        assert container.streams.video[0].codec_context.name == "ffv1"
    with pytest.raises(NoVideoStreamError), open_container(write_audio_only(media_dir / "a.wav")):
        pass


# --- iter_frames -----------------------------------------------------------------------------------


def test_iter_frames_fixed_fps_every_sixth(media_dir: Path) -> None:
    path = write_indexed_video(media_dir / "thirty.mkv", 90, 30, (24, 32))
    with iter_frames(path, fps=5) as frames:
        got = list(frames)
    assert all(isinstance(f, DecodedFrame) for f in got)
    assert [f.index for f in got] == list(range(0, 90, 6))
    assert [frame_index(f.rgb) for f in got] == list(range(0, 90, 6))
    np.testing.assert_allclose([f.time_s for f in got], np.arange(0, 90, 6) / 30, atol=1e-3)
    assert frames.stats.decoded_frames == 90 and frames.stats.yielded_frames == 15
    assert frames.native_fps == pytest.approx(30.0)


def test_iter_frames_other_rates_and_resize(media_dir: Path) -> None:
    path = write_indexed_video(media_dir / "thirty_b.mkv", 60, 30, (24, 32))
    assert [f.index for f in iter_frames(path, fps=None)] == list(range(60))
    assert [f.index for f in iter_frames(path, fps=3)] == list(range(0, 60, 10))
    assert [f.index for f in iter_frames(path, fps=100)] == list(range(60))  # above native: all
    first = next(iter(iter_frames(path, fps=None, size_hw=(10, 12), resize="letterbox")))
    assert first.rgb.shape == (10, 12, 3)
    with pytest.raises(ValueError):
        iter_frames(path, fps=0)


def test_iter_frames_close_early(media_dir: Path) -> None:
    path = write_indexed_video(media_dir / "early.mkv", 40, 30, (16, 16))
    frames = iter_frames(path, fps=None)
    assert next(frames).index == 0
    frames.close()
    frames.close()
    with pytest.raises(StopIteration):
        next(frames)


def test_audio_track_is_ignored(media_dir: Path) -> None:
    path = write_h264_video(media_dir / "with_audio.mp4", 45, 30, (48, 64), with_audio=True)
    info = probe(path)
    assert info.has_audio and info.frame_count == 45
    clip = sample_clip(path, num_frames=6, size_hw=(32, 32))
    assert np.array_equal(clip.indices, sample_indices(45, 6)) and clip.decoded_frames == 45


def test_write_video_roundtrip(media_dir: Path) -> None:
    """The generic writer keeps arbitrary RGB content exactly with a lossless codec."""
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(3)]
    path = write_video(media_dir / "noise.mkv", frames, fps=10, codec="ffv1")
    decoded = sample_clip(path, num_frames=3, size_hw=None).frames
    assert all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))
