"""actors.sources: live source reading (pacing, loops, reconnects, backoff, typed errors).

Real videos are written with PyAV into tmp dirs (tests/media_factory.py); network sources are real
HTTP servers on 127.0.0.1 in a thread, one of them cutting or stalling its first response.
"""

from __future__ import annotations

import itertools
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

from actors.sources import Backoff, LiveFrame, SourceConfig, StreamReader
from nexara.errors import NotAVideoError, SourceUnreachableError

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from media_factory import (  # noqa: E402
    corrupt_video_packets,
    frame_index,
    write_h264_video,
    write_indexed_video,
    write_text_file,
)

pytestmark = pytest.mark.unit

FPS = 30.0
N_FRAMES = 60  # 2 s at 30 fps
SIZE_HW = (48, 64)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s lossless video, frame i coded by its colour (media_factory.frame_index)."""
    return write_indexed_video(tmp_path_factory.mktemp("src") / "indexed.mkv", N_FRAMES, fps=FPS, size_hw=SIZE_HW)


def _fast(url: str | Path, **kw: object) -> SourceConfig:
    return SourceConfig(str(url), pacing="fast", **kw)  # type: ignore[arg-type]


def _assert_increasing(times: list[float]) -> None:
    assert all(b > a for a, b in itertools.pairwise(times)), times


# --- config and backoff ------------------------------------------------------------------------


def test_source_config_validates_and_resolves_reconnect(indexed: Path) -> None:
    assert not SourceConfig(str(indexed)).should_reconnect
    assert SourceConfig("rtsp://cam.local/stream").should_reconnect
    assert SourceConfig("http://127.0.0.1/x.m3u8").should_reconnect
    assert SourceConfig(":0.0", format="x11grab").is_live
    assert not SourceConfig(f"file://{indexed}").is_url
    assert SourceConfig(str(indexed), reconnect=True).should_reconnect
    assert SourceConfig(str(indexed)).paced and not SourceConfig("rtsp://h/s").paced
    options = {"rtsp_transport": "tcp"}
    cfg = SourceConfig("rtsp://h/s", options=options)
    options["x"] = "y"
    assert cfg.options == {"rtsp_transport": "tcp"}  # a private copy
    bad: list[tuple[dict[str, object], str]] = [
        ({"url": ""}, "url"),
        ({"url": "a.mp4", "pacing": "slow"}, "pacing"),
        ({"url": "rtsp://h/s", "loop": True}, "loop"),
        ({"url": "a.mp4", "read_timeout_s": 0}, "read_timeout_s"),
        ({"url": "a.mp4", "max_reconnects": -1}, "max_reconnects"),
        ({"url": "a.mp4", "backoff_initial_s": 5, "backoff_max_s": 1}, "backoff_max_s"),
        ({"url": "a.mp4", "jitter": 1.5}, "jitter"),
        ({"url": "a.mp4", "options": {"a": 1}}, "options"),
        ({"url": "a.mp4", "format": ""}, "format"),
    ]
    for kwargs, word in bad:
        with pytest.raises(ValueError, match=word):
            SourceConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps"):
        StreamReader(SourceConfig(str(indexed)), fps=0)


def test_backoff_grows_caps_jitters_and_resets() -> None:
    exact = Backoff(0.5, 4.0, 0.0)
    assert [exact.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    exact.reset()
    assert exact.attempt == 0 and exact.next_delay() == 0.5

    jittered = Backoff(0.5, 30.0, 0.5, rng=random.Random(7))
    delays, bases = [], []
    for _ in range(12):
        bases.append(jittered.base_delay())
        delays.append(jittered.next_delay())
    assert bases == [min(30.0, 0.5 * 2**k) for k in range(12)]
    for base, delay in zip(bases, delays, strict=True):
        assert 0.5 * base <= delay <= base <= 30.0
    assert len({round(d / b, 6) for d, b in zip(delays, bases, strict=True)}) > 6  # really random
    jittered.reset()
    assert 0.25 <= jittered.next_delay() <= 0.5
    with pytest.raises(ValueError, match="jitter"):
        Backoff(0.5, 1.0, 2.0)
    with pytest.raises(ValueError, match="max_s"):
        Backoff(2.0, 1.0, 0.5)


# --- files -------------------------------------------------------------------------------------


def test_fast_file_yields_requested_fps_over_the_whole_duration(indexed: Path) -> None:
    reader = StreamReader(_fast(indexed), fps=10)
    frames = list(reader.frames())
    assert [f.index for f in frames] == list(range(20))
    # the first frame at or after each 0.1 s slot: every 3rd frame of the 30 fps source
    assert [frame_index(f.rgb) for f in frames] == list(range(0, N_FRAMES, 3))
    times = [f.time_s for f in frames]
    _assert_increasing(times)
    assert times[0] == 0.0 and times[-1] == pytest.approx(1.9, abs=2e-3)
    assert all(f.rgb.shape == (*SIZE_HW, 3) and f.rgb.dtype.name == "uint8" for f in frames)
    stats = reader.stats()
    assert stats["state"] == "ended" and stats["last_error"] is None
    assert (stats["connects"], stats["reconnects"], stats["frames_decoded"], stats["frames_emitted"]) == (1, 0, 60, 20)
    assert stats["input_fps"] == pytest.approx(FPS, rel=0.02)
    with pytest.raises(RuntimeError, match="once"):
        reader.frames()

    # a source slower than the requested rate: every frame
    every = list(StreamReader(_fast(indexed), fps=50).frames())
    assert [frame_index(f.rgb) for f in every] == list(range(N_FRAMES))


def test_realtime_pacing_takes_the_video_duration(indexed: Path) -> None:
    started = time.monotonic()
    frames = list(StreamReader(SourceConfig(str(indexed), pacing="realtime"), fps=10).frames())
    elapsed = time.monotonic() - started
    assert len(frames) == 20
    assert elapsed >= 1.8, elapsed
    # each frame comes out no earlier than its stream time after the first one
    for f in frames:
        assert f.wall_time - frames[0].wall_time >= f.time_s - 0.02


def test_loop_keeps_stream_time_increasing_past_the_duration(indexed: Path) -> None:
    reader = StreamReader(_fast(indexed, loop=True), fps=10)
    frames: list[LiveFrame] = []
    for frame in reader.frames():
        frames.append(frame)
        if len(frames) == 50:
            break
    times = [f.time_s for f in frames]
    _assert_increasing(times)
    assert times[-1] > 4.0  # 2.5 passes over a 2 s file
    assert [frame_index(f.rgb) for f in frames[18:23]] == [54, 57, 0, 3, 6]
    assert times[20] - times[19] == pytest.approx(0.1, abs=2e-3)  # one frame after the last frame
    stats = reader.stats()
    assert stats["loops"] == 2 and stats["reconnects"] == 0 and stats["state"] == "ended"

    # the stop event ends an endless loop too
    stop = threading.Event()
    looping = StreamReader(_fast(indexed, loop=True), fps=10, stop=stop)
    count = 0
    for frame in looping.frames():
        count += 1
        if frame.time_s > 3.0:
            stop.set()
    assert 31 <= count <= 33 and looping.stats()["state"] == "ended"


def _read_with_packets(path: Path, fps: float) -> tuple[list[LiveFrame], list[float], list[tuple[str, str, int, int]]]:
    packet_times: list[float] = []
    streams: list[tuple[str, str, int, int]] = []

    def on_connect(stream: av.video.stream.VideoStream) -> None:
        # (the stream belongs to the open container: read it here, never keep it)
        ctx = stream.codec_context
        streams.append((stream.type, ctx.name, ctx.width, ctx.height))

    reader = StreamReader(_fast(path), fps=fps, on_packet=lambda _, t: packet_times.append(t), on_connect=on_connect)
    return list(reader.frames()), packet_times, streams


def test_on_packet_times_increase_and_on_connect_is_called_once(tmp_path: Path) -> None:
    path = write_h264_video(tmp_path / "p.mp4", n_frames=45, fps=FPS, size_hw=(64, 96))
    frames, packet_times, streams = _read_with_packets(path, fps=10)
    assert streams == [("video", "h264", 96, 64)]
    assert len(packet_times) == 45 and packet_times[0] == 0.0
    _assert_increasing(packet_times)
    assert len(frames) == 15 and frames[0].time_s == 0.0
    _assert_increasing([f.time_s for f in frames])
    # packets and frames share the stream clock: each emitted frame is one of the packets' times
    assert {round(f.time_s, 6) for f in frames} <= {round(t, 6) for t in packet_times}

    # B-frames: packets come in decode order, each timed by the frame it carries (presentation)
    bpath = write_h264_video(tmp_path / "b.mp4", n_frames=45, fps=FPS, size_hw=(64, 96), bframes=2)
    frames, packet_times, streams = _read_with_packets(bpath, fps=FPS)
    assert len(streams) == 1 and len(frames) == 45
    assert packet_times != sorted(packet_times)
    assert sorted(packet_times) == pytest.approx([f.time_s for f in frames], abs=1e-9)

    # an error in a callback ends the reader and reaches the consumer
    def broken(packet: av.Packet, t: float) -> None:
        raise RuntimeError("recorder disk full")

    failing = StreamReader(_fast(path), fps=10, on_packet=broken)
    with pytest.raises(RuntimeError, match="disk full"):
        next(failing.frames())
    assert failing.stats()["state"] == "failed" and "disk full" in failing.stats()["last_error"]


def test_corrupt_packets_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write_h264_video(tmp_path / "c.mp4", n_frames=60, fps=FPS, gop=10)
    corrupt_video_packets(path, [13, 37])
    reader = StreamReader(_fast(path), fps=FPS)
    frames = list(reader.frames())
    stats = reader.stats()
    assert stats["corrupt_packets"] == 2 and stats["state"] == "ended"
    assert 40 <= len(frames) < 60
    _assert_increasing([f.time_s for f in frames])


def test_bad_files_raise_typed_errors_at_once(tmp_path: Path) -> None:
    text = write_text_file(tmp_path / "notes.mp4")
    started = time.monotonic()
    with pytest.raises(NotAVideoError, match=r"notes\.mp4"):
        next(StreamReader(_fast(text), fps=10).frames())
    with pytest.raises(SourceUnreachableError, match="no such file"):
        next(StreamReader(_fast(tmp_path / "missing.mp4"), fps=10).frames())
    assert time.monotonic() - started < 5


def test_input_format_source_and_its_typed_errors() -> None:
    # an FFmpeg input format instead of a file: lavfi's test pattern, endless like a capture device
    cfg = SourceConfig("testsrc=size=64x48:rate=30", format="lavfi")
    assert cfg.is_live and not cfg.paced and not cfg.should_reconnect
    reader = StreamReader(cfg, fps=10)
    frames: list[LiveFrame] = []
    for frame in reader.frames():
        frames.append(frame)
        if len(frames) == 5:
            break
    assert [f.time_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-6)
    assert frames[0].rgb.shape == (48, 64, 3)
    assert reader.stats()["state"] == "ended"
    with pytest.raises(SourceUnreachableError, match="no input format 'nosuchformat'"):
        next(StreamReader(SourceConfig("x", format="nosuchformat"), fps=10).frames())
    with pytest.raises(NotAVideoError, match="Filter not found"):
        next(StreamReader(SourceConfig("nosuchfilter", format="lavfi"), fps=10).frames())


# --- network -----------------------------------------------------------------------------------


Handle = Callable[[BaseHTTPRequestHandler, int], None]
Serve = Callable[[Handle], tuple[str, list[str]]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a real HTTP server on 127.0.0.1 whose GET handler is ``handle(request, n)`` (n: 1-based
    request count); returns the URL and the list of requested paths."""
    servers: list[ThreadingHTTPServer] = []

    def start(handle: Handle) -> tuple[str, list[str]]:
        hits: list[str] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                with lock:
                    hits.append(self.path)
                    n = len(hits)
                handle(self, n)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/cam.mkv", hits

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _send_video(request: BaseHTTPRequestHandler, data: bytes, *, cut: float = 1.0) -> None:
    """Announce the whole file, send the first ``cut`` fraction of it, then close the socket."""
    request.send_response(200)
    request.send_header("Content-Type", "video/x-matroska")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data[: int(len(data) * cut)])
    request.wfile.flush()
    if cut < 1.0:
        request.close_connection = True
        request.connection.shutdown(socket.SHUT_RDWR)


@pytest.mark.timeout(60)
def test_http_cut_short_reconnects_with_increasing_times(serve: Serve, indexed: Path) -> None:
    data = indexed.read_bytes()
    url, hits = serve(lambda request, n: _send_video(request, data, cut=0.4 if n == 1 else 1.0))
    cfg = _fast(url, max_reconnects=2, backoff_initial_s=0.01, backoff_max_s=0.02, read_timeout_s=5)
    connects: list[str] = []
    reader = StreamReader(cfg, fps=10, on_connect=lambda stream: connects.append(stream.codec_context.name))
    frames = list(reader.frames())
    stats = reader.stats()
    # the cut response gave part of the video, then two complete ones: max_reconnects ends it
    assert len(hits) == 3 and len(connects) == 3
    assert stats["reconnects"] == 2 and stats["connects"] == 3
    assert stats["state"] == "failed" and "ended" in stats["last_error"]
    assert stats["corrupt_packets"] == 0  # a transport error is not corrupt data
    indices = [frame_index(f.rgb) for f in frames]
    # each connection starts the file over; the 0.1 s slots go on across the gap
    restarts = [k for k in range(1, len(indices)) if indices[k] < indices[k - 1]]
    assert len(restarts) == 2 and 3 <= restarts[0] < 20, indices
    assert indices[restarts[0]] <= 3 and indices[restarts[0] - 1] < 0.6 * N_FRAMES
    second = indices[restarts[0] : restarts[1]]
    assert len(second) == 20 and second[-1] >= N_FRAMES - 3 and set(np.diff(second)) == {3}, second
    _assert_increasing([f.time_s for f in frames])
    assert frames[-1].time_s > 4.0

    # without reconnects the end of an http file is just the end
    once = StreamReader(_fast(url, reconnect=False), fps=10)
    assert [frame_index(f.rgb) for f in once.frames()] == list(range(0, N_FRAMES, 3))
    assert once.stats()["state"] == "ended" and len(hits) == 4


@pytest.mark.timeout(60)
def test_http_stalled_read_times_out_and_reconnects(serve: Serve, indexed: Path) -> None:
    data = indexed.read_bytes()
    release = threading.Event()

    def handle(request: BaseHTTPRequestHandler, n: int) -> None:
        if n == 1:  # headers and 40 % of the file, then silence on an open connection
            request.send_response(200)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data[: int(len(data) * 0.4)])
            request.wfile.flush()
            release.wait(20)
            return
        _send_video(request, data)

    url, hits = serve(handle)
    cfg = _fast(url, max_reconnects=1, backoff_initial_s=0.01, backoff_max_s=0.02, read_timeout_s=1.0)
    reader = StreamReader(cfg, fps=10)
    started = time.monotonic()
    try:
        frames = list(reader.frames())
    finally:
        release.set()
    stats = reader.stats()
    assert len(hits) == 2 and stats["reconnects"] == 1 and stats["state"] == "failed"
    assert time.monotonic() - started < 15
    assert len(frames) > 20
    _assert_increasing([f.time_s for f in frames])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
def test_unreachable_url_fails_after_max_reconnects_without_hanging() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/cam.mkv"
    reader = StreamReader(
        _fast(url, max_reconnects=1, backoff_initial_s=0.01, backoff_max_s=0.01, read_timeout_s=2), fps=10
    )
    started = time.monotonic()
    assert list(reader.frames()) == []
    stats = reader.stats()
    assert stats["state"] == "failed" and stats["reconnects"] == 1 and stats["connects"] == 0
    assert stats["last_error"] and "127.0.0.1" in stats["last_error"]
    assert time.monotonic() - started < 10
    # without reconnects the typed error is raised
    with pytest.raises(SourceUnreachableError):
        next(StreamReader(_fast(url, reconnect=False, read_timeout_s=2), fps=10).frames())


@pytest.mark.timeout(60)
def test_stop_interrupts_the_backoff_wait() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/cam.mkv"
    stop = threading.Event()
    reader = StreamReader(
        _fast(url, backoff_initial_s=30, backoff_max_s=30, jitter=0, read_timeout_s=2), fps=10, stop=stop
    )
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    assert list(reader.frames()) == []
    assert time.monotonic() - started < 5
    assert reader.stats()["state"] == "ended" and reader.stats()["reconnects"] == 1
    timer.cancel()
