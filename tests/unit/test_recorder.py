"""actors.recorder: evidence clips remuxed from real encoded packets (H.264 in MP4, VP8 falling back to
Matroska, a codec neither takes), pre/post roll, flush, reconnects, a bounded buffer, bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from actors.recorder import ClipRecorder, safe_clip_name

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from media_factory import index_frame, write_h264_video, write_video  # noqa: E402

pytestmark = pytest.mark.unit

FPS = 30
GOP = 30  # a keyframe every second


@pytest.fixture(scope="module")
def h264_12s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of H.264 in MP4, 30 fps, keyframes at 0, 1, 2, ... s."""
    return write_h264_video(tmp_path_factory.mktemp("media") / "src.mp4", n_frames=12 * FPS, fps=FPS, gop=GOP)


@pytest.fixture(scope="module")
def h264_frames(h264_12s: Path) -> list[np.ndarray]:
    return decode(h264_12s)[0]


def decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """RGB frames and their presentation times (seconds)."""
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
    return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time or 0.0) for f in frames]


def feed(
    rec: ClipRecorder,
    path: Path,
    *,
    offset_s: float = 0.0,
    skip_packets: int = 0,
    on_packet: Callable[[float], None] | None = None,
) -> float:
    """One connection, as the stream reader does it: start_stream, then every video packet with its
    stream time (shifted by ``offset_s``). The input container is closed on return. Returns the last time."""
    last = offset_s
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rec.start_stream(stream)
        origin = stream.start_time or 0
        for n, packet in enumerate(container.demux(stream)):
            if packet.size == 0 or packet.pts is None or n < skip_packets:
                continue
            assert packet.time_base is not None
            last = offset_s + float((packet.pts - origin) * packet.time_base)
            rec.push(packet, last)
            if on_packet is not None:
                on_packet(last)
    return last


def source_index(frame: np.ndarray, source: list[np.ndarray]) -> int:
    """Index of the source frame ``frame`` is bit-identical to (remuxing decodes to the same pixels)."""
    hits = [i for i, s in enumerate(source) if s.shape == frame.shape and np.array_equal(s, frame)]
    assert len(hits) == 1, f"frame matches source frames {hits}"
    return hits[0]


def assert_clip_is_source_run(clip: list[np.ndarray], source: list[np.ndarray], first: int) -> None:
    assert source_index(clip[0], source) == first
    for k, frame in enumerate(clip):
        assert np.array_equal(frame, source[first + k]), f"clip frame {k} != source frame {first + k}"


def test_clip_after_post_roll_is_a_bit_exact_remux(
    tmp_path: Path, h264_12s: Path, h264_frames: list[np.ndarray]
) -> None:
    rec = ClipRecorder(tmp_path / "clips", pre_s=2.0, post_s=2.0)
    seen: dict[str, float | Path] = {}

    def on_packet(t: float) -> None:
        if "path" not in seen and t >= 7.0:  # confirmation comes a second after the incident start
            seen["path"] = rec.request("cam-1-6000-1", 6.0)
            assert not rec.is_ready("cam-1-6000-1") and rec.status("cam-1-6000-1") == "pending"
            assert rec.pending_paths() == [seen["path"]]
        if "ready_at" not in seen and rec.is_ready("cam-1-6000-1"):
            seen["ready_at"] = t

    feed(rec, h264_12s, on_packet=on_packet)
    path = seen["path"]
    assert isinstance(path, Path) and path == tmp_path / "clips" / "cam-1-6000-1.mp4"
    ready_at = seen["ready_at"]
    assert isinstance(ready_at, float) and 8.0 < ready_at <= 8.0 + 1.5 / FPS  # the first packet past 6 + 2 s
    assert path.is_file() and rec.clip_path("cam-1-6000-1") == path
    assert not list(path.parent.glob(".*partial"))

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "h264"
        first_packet = next(p for p in c.demux(vs) if p.size)
        assert first_packet.is_keyframe
    frames, times = decode(path)
    # From the keyframe at 4 s (= 6 - 2) through the frame at 8 s (= 6 + 2): 121 frames.
    assert len(frames) == 121
    assert times[0] < 0.05  # rebased
    duration = times[-1] - times[0] + 1 / FPS
    assert 4.0 <= duration <= 5.0
    assert_clip_is_source_run(frames, h264_frames, first=4 * FPS)
    stats = rec.stats()
    assert stats["clips_written"] == 1 and stats["clips_failed"] == 0 and stats["pending"] == 0
    rec.close()


def test_request_near_stream_end_is_written_short_on_flush(
    tmp_path: Path, h264_12s: Path, h264_frames: list[np.ndarray]
) -> None:
    rec = ClipRecorder(tmp_path, pre_s=2.0, post_s=2.0)
    feed(rec, h264_12s, on_packet=lambda t: None)
    path = rec.request("late", 11.5)  # wants [9.5, 13.5]; the stream ends at ~12 s
    assert not path.exists() and rec.stats()["pending"] == 1
    rec.flush()
    assert rec.is_ready("late") and path.is_file()
    frames, _ = decode(path)
    assert len(frames) == 12 * FPS - 9 * FPS  # keyframe at 9 s to the last frame
    assert_clip_is_source_run(frames, h264_frames, first=9 * FPS)
    assert rec.stats()["clips_written"] == 1
    rec.close()


def test_reconnect_discards_old_packets_and_never_mixes(
    tmp_path: Path, h264_12s: Path, h264_frames: list[np.ndarray]
) -> None:
    other = write_h264_video(tmp_path / "other.mp4", n_frames=6 * FPS, fps=FPS, gop=GOP, size_hw=(64, 96))
    rec = ClipRecorder(tmp_path / "clips", pre_s=2.0, post_s=2.0)

    def on_first(t: float) -> None:
        if t >= 11.0 and rec.status("spans-reconnect") == "unknown":
            rec.request("spans-reconnect", 11.0)  # wants [9, 13]; the connection drops at ~12 s

    last = feed(rec, h264_12s, on_packet=on_first)  # the first input container is closed here
    assert rec.stats()["buffered_packets"] > 0 and not rec.is_ready("spans-reconnect")

    def on_second(t: float) -> None:
        if t >= 21.0 and rec.status("after") == "unknown":
            rec.request("after", 21.0)  # wants [19, 23]: 19-20 s is before this connection's data

    with av.open(str(other)) as c:
        stream = c.streams.video[0]
        rec.start_stream(stream)
        # The old connection's pending clip was written from its own (closed) packets; the buffer is empty.
        assert rec.is_ready("spans-reconnect") and rec.stats()["buffered_packets"] == 0
        assert rec.stats()["connections"] == 2
    feed(rec, other, offset_s=20.0, on_packet=on_second)
    assert last < 20.0

    old, _ = decode(rec.clip_path("spans-reconnect"))  # type: ignore[arg-type]
    assert_clip_is_source_run(old, h264_frames, first=9 * FPS)
    assert len(old) == 12 * FPS - 9 * FPS  # what the old connection had

    assert rec.is_ready("after")
    new, _ = decode(rec.clip_path("after"))  # type: ignore[arg-type]
    assert all(f.shape == (64, 96, 3) for f in new)  # only the new connection's packets
    other_frames, _ = decode(other)
    assert_clip_is_source_run(new, other_frames, first=0)  # from its first keyframe (20 s) ...
    assert len(new) == 3 * FPS + 1  # ... through 23 s
    rec.close()


def test_buffer_stays_bounded(tmp_path: Path, h264_12s: Path) -> None:
    rec = ClipRecorder(tmp_path, pre_s=1.0, post_s=1.0, margin_s=1.0)
    sizes: list[tuple[float, int]] = []
    feed(rec, h264_12s, on_packet=lambda t: sizes.append((t, rec.stats()["buffered_packets"])))
    # Kept: from the last keyframe at or before now - 2 s, so at most 3 s of packets, whatever the length.
    assert max(n for _, n in sizes) <= 3 * FPS + 1
    middle = max(n for t, n in sizes if 4 <= t < 8)
    late = max(n for t, n in sizes if t >= 8)
    assert late <= middle
    span = rec.buffered_span_s
    assert span is not None and span[1] - span[0] <= 3.0
    assert rec.stats()["packets_dropped"] == 0

    # A pending clip holds its packets until written.
    rec2 = ClipRecorder(tmp_path / "b", pre_s=1.0, post_s=1.0, margin_s=1.0)
    rec2.request("held", 5.0)  # needs [4, 6], written once past 6 s
    feed(rec2, h264_12s)
    assert rec2.is_ready("held")
    frames, _ = decode(tmp_path / "b" / "held.mp4")
    assert len(frames) == 2 * FPS + 1
    rec.close()
    rec2.close()


def test_request_before_any_packets_gets_its_clip_once_data_arrives(
    tmp_path: Path, h264_12s: Path, h264_frames: list[np.ndarray]
) -> None:
    rec = ClipRecorder(tmp_path, pre_s=2.0, post_s=2.0)
    path = rec.request("early", 0.5)  # before start_stream: wants [-1.5, 2.5]
    assert path == tmp_path / "early.mp4" and rec.pending_paths() == [path]
    feed(rec, h264_12s, skip_packets=10)  # joins mid-GOP: packets before the keyframe at 1 s are useless
    assert rec.stats()["packets_dropped"] == GOP - 10
    assert rec.is_ready("early")
    frames, _ = decode(path)
    assert_clip_is_source_run(frames, h264_frames, first=FPS)  # first buffered keyframe (1 s) ...
    assert len(frames) == int(1.5 * FPS) + 1  # ... through 2.5 s
    rec.close()


def test_request_with_nothing_buffered_fails_clearly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = ClipRecorder(tmp_path)
    path = rec.request("nothing", 3.0)
    with caplog.at_level(logging.ERROR, logger="actors.recorder"):
        rec.flush()
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert rec.status("nothing") == "failed" and not rec.is_ready("nothing") and rec.clip_path("nothing") is None
    assert rec.stats()["clips_failed"] == 1 and rec.stats()["pending"] == 0
    assert any("nothing" in r.getMessage() and "no packets" in r.getMessage() for r in caplog.records)
    rec.close()


def test_window_outside_the_buffer_fails_instead_of_writing_other_footage(tmp_path: Path, h264_12s: Path) -> None:
    rec = ClipRecorder(tmp_path, pre_s=1.0, post_s=1.0)
    rec.request("future", 30.0)  # [29, 31]: the stream ends at 12 s
    feed(rec, h264_12s)
    rec.close()  # close flushes
    assert rec.status("future") == "failed" and list(tmp_path.glob("*.mp4")) == []


def test_b_frames_keep_their_references(tmp_path: Path) -> None:
    src = write_h264_video(tmp_path / "bf.mp4", n_frames=6 * FPS, fps=FPS, gop=GOP, bframes=2)
    source, _ = decode(src)
    rec = ClipRecorder(tmp_path / "clips", pre_s=1.0, post_s=1.0)
    rec.request("bf", 3.0)
    feed(rec, src)
    assert rec.is_ready("bf")
    frames, times = decode(tmp_path / "clips" / "bf.mp4")
    assert times == sorted(times)
    assert_clip_is_source_run(frames, source, first=2 * FPS)
    assert len(frames) >= 2 * FPS + 1
    rec.close()


def test_codec_mp4_refuses_falls_back_to_matroska(tmp_path: Path) -> None:
    vp8 = write_video(
        tmp_path / "src.webm",
        (index_frame(i * 5, (48, 64)) for i in range(40)),
        fps=10,
        codec="libvpx",
        gop=10,
        options={"deadline": "realtime", "cpu-used": "8"},
    )
    source, _ = decode(vp8)
    rec = ClipRecorder(tmp_path / "clips", pre_s=1.0, post_s=1.0)
    planned = rec.request("before-connect", 2.0)  # codec unknown yet: planned as .mp4
    assert planned.suffix == ".mp4"
    with av.open(str(vp8)) as c:
        stream = c.streams.video[0]
        rec.start_stream(stream)
        known = rec.request("after-connect", 2.5)  # codec known: planned as .mkv at once
        assert known.suffix == ".mkv"
        for packet in c.demux(stream):
            if packet.size and packet.pts is not None and packet.time_base is not None:
                rec.push(packet, float(packet.pts * packet.time_base))
    rec.flush()
    assert rec.is_ready("before-connect") and rec.is_ready("after-connect")
    written = rec.clip_path("before-connect")
    assert written == planned.with_suffix(".mkv") and written.is_file() and not planned.exists()
    assert rec.clip_path("after-connect") == known and known.is_file()
    frames, _ = decode(written)
    with av.open(str(written)) as c:
        assert c.format.name.startswith("matroska") and c.streams.video[0].codec_context.name == "vp8"
    assert_clip_is_source_run(frames, source, first=10)  # keyframe at 1 s through 3 s
    assert len(frames) == 21
    stats = rec.stats()
    assert stats["clips_written"] == 2 and stats["fallbacks"] == 1 and stats["clips_failed"] == 0
    rec.close()


def test_codec_no_container_takes_is_counted_failed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = write_video(
        tmp_path / "src.avi", (index_frame(i, (16, 16)) for i in range(10)), fps=5, codec="huffyuv", pix_fmt="yuv422p"
    )
    rec = ClipRecorder(tmp_path / "clips", pre_s=1.0, post_s=1.0)
    with caplog.at_level(logging.ERROR, logger="actors.recorder"):
        with av.open(str(src)) as c:
            stream = c.streams.video[0]
            rec.start_stream(stream)
            rec.request("huff", 1.0)
            for packet in c.demux(stream):
                if packet.size and packet.pts is not None and packet.time_base is not None:
                    rec.push(packet, float(packet.pts * packet.time_base))
        rec.flush()
    assert rec.status("huff") == "failed" and rec.stats()["clips_failed"] == 1
    assert list((tmp_path / "clips").iterdir()) == []  # no file, no temp leftovers
    assert any("huff" in r.getMessage() and "not written" in r.getMessage() for r in caplog.records)
    rec.close()


def test_bad_input_is_rejected(tmp_path: Path, h264_12s: Path) -> None:
    with pytest.raises(ValueError, match="pre_s"):
        ClipRecorder(tmp_path, pre_s=-1)
    with pytest.raises(ValueError, match="container"):
        ClipRecorder(tmp_path, container="avi")  # type: ignore[arg-type]
    rec = ClipRecorder(tmp_path)
    with av.open(str(h264_12s)) as c:
        packet = next(p for p in c.demux(c.streams.video[0]) if p.size)
        with pytest.raises(RuntimeError, match="start_stream"):
            rec.push(packet, 0.0)
        with pytest.raises(ValueError, match="video stream"):
            rec.start_stream("not a stream")  # type: ignore[arg-type]
        rec.start_stream(c.streams.video[0])
        with pytest.raises(ValueError, match="time_s"):
            rec.push(packet, float("nan"))
        with pytest.raises(TypeError, match=r"av\.Packet"):
            rec.push(b"bytes", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event_id"):
        rec.request("", 1.0)
    with pytest.raises(ValueError, match="start_s"):
        rec.request("x", float("inf"))

    with_audio = write_h264_video(tmp_path / "av.mp4", n_frames=10, with_audio=True)
    with av.open(str(with_audio)) as c:
        with pytest.raises(ValueError, match="video stream"):
            rec.start_stream(c.streams.audio[0])  # type: ignore[arg-type]

    assert safe_clip_name("cam-1-6000-1") == "cam-1-6000-1"
    odd = safe_clip_name("../cam 1/evt:7")
    assert "/" not in odd and " " not in odd and not odd.startswith(".")
    assert safe_clip_name("cam 1") != safe_clip_name("cam_1")
    path = rec.request("../cam 1/evt:7", 1.0)
    assert path.parent == tmp_path and path.name == odd + ".mp4"
    assert rec.request("../cam 1/evt:7", 1.0) == path  # asking twice: one clip
    rec.close()
    with pytest.raises(RuntimeError, match="closed"):
        rec.request("y", 1.0)
