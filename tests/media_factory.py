"""Synthetic media for tests, written with PyAV at test time (nothing is committed).

Plain helper module (no fixtures) so any test can ``from tests.media_factory import ...`` (or
``from media_factory import ...`` when ``tests/`` is on ``sys.path``).

Index-coded frames: :func:`write_indexed_video` fills every pixel of frame ``i`` with the colour
:func:`index_color` ``(i)`` = (R, G, B) = (i % 256, 40 + (i // 256) % 200, 200). The default codec
(FFV1 in Matroska, ``bgr0`` pixels) is lossless, so :func:`frame_index` recovers ``i`` exactly from
a decoded RGB frame, also after any resize (a uniform frame stays uniform under swscale).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "BLUE_BAR",
    "corrupt_bytes",
    "corrupt_video_packets",
    "find_box",
    "frame_index",
    "index_color",
    "index_frame",
    "truncate",
    "video_packet_spans",
    "write_audio_only",
    "write_empty_video",
    "write_h264_video",
    "write_indexed_video",
    "write_text_file",
    "write_unknown_codec_video",
    "write_video",
]

# Lossless codec -> (container extension it is written into by default, pixel format).
_LOSSLESS: dict[str, str] = {"ffv1": "bgr0", "png": "rgb24", "libx264rgb": "rgb24"}
BLUE_BAR = 200  # blue channel of every index-coded frame (never 0, so letterbox bars are distinct)


def index_color(i: int) -> tuple[int, int, int]:
    """RGB colour that codes frame index ``i`` (0 <= i < 51,200)."""
    return (i % 256, 40 + (i // 256) % 200, BLUE_BAR)


def index_frame(i: int, size_hw: tuple[int, int]) -> np.ndarray:
    """A uniform (H, W, 3) uint8 frame of :func:`index_color` ``(i)``."""
    frame = np.empty((size_hw[0], size_hw[1], 3), dtype=np.uint8)
    frame[...] = index_color(i)
    return frame


def frame_index(rgb: np.ndarray) -> int:
    """Decode the index from an index-coded RGB frame (reads the median of the centre block)."""
    h, w = rgb.shape[:2]
    block = rgb[h // 2 - h // 8 : h // 2 + h // 8 + 1, w // 2 - w // 8 : w // 2 + w // 8 + 1]
    r = int(np.median(block[..., 0]))
    g = int(np.median(block[..., 1]))
    return r + 256 * (g - 40)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float = 30.0,
    codec: str = "ffv1",
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    gop: int | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB uint8 frames (H, W, 3) into ``path``; the container follows the suffix."""
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    it = iter(frames)
    first = next(it, None)
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.pix_fmt = pix_fmt or _LOSSLESS.get(codec, "yuv420p")
        if first is not None:
            stream.height, stream.width = first.shape[:2]
        if gop is not None:
            stream.codec_context.gop_size = gop
        if options:
            stream.options = dict(options)
        for rgb in ([] if first is None else [first]) + list(it):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_indexed_video(
    path: str | Path,
    n_frames: int,
    fps: float = 30.0,
    size_hw: tuple[int, int] = (48, 64),
    codec: str = "ffv1",
) -> Path:
    """Lossless video whose frame ``i`` is uniformly :func:`index_color` ``(i)``.

    ``codec``: ``"ffv1"`` (use .mkv), ``"png"`` (use .mov/.mkv) or ``"libx264rgb"`` (qp 0, any
    container); all decode back to the exact colours.
    """
    if codec not in _LOSSLESS:
        raise ValueError(f"{codec!r} is not one of the lossless codecs {sorted(_LOSSLESS)}")
    options = {"qp": "0", "preset": "ultrafast"} if codec == "libx264rgb" else None
    return write_video(
        path,
        (index_frame(i, size_hw) for i in range(n_frames)),
        fps=fps,
        codec=codec,
        options=options,
    )


def _textured_frame(i: int, size_hw: tuple[int, int]) -> np.ndarray:
    """A moving gradient plus a fixed noise texture: real payload for H.264, frame ``i`` distinct."""
    h, w = size_hw
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(1234)
    noise = rng.integers(0, 64, size=(h, w), dtype=np.int64)
    base = (xx * 3 + yy * 2 + i * 7 + noise) % 256
    rgb = np.stack([base, (base + 85 + i) % 256, (255 - base) % 256], axis=-1)
    return rgb.astype(np.uint8)


def write_h264_video(
    path: str | Path,
    n_frames: int = 120,
    fps: float = 30.0,
    size_hw: tuple[int, int] = (96, 128),
    *,
    gop: int = 10,
    bframes: int = 0,
    faststart: bool = False,
    with_audio: bool = False,
) -> Path:
    """A lossy H.264 (libx264, yuv420p) video with textured moving frames; .mp4 by default.

    ``gop`` sets the keyframe interval (closed GOPs, no scene-cut keyframes); ``bframes`` > 0 makes
    decode order differ from presentation order; ``faststart`` moves the MP4 index (moov) before
    the data; ``with_audio`` adds an AAC track (interleaved with the video) of the same length.
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    container_options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=container_options) as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.height, vs.width = size_hw
        vs.pix_fmt = "yuv420p"
        vs.codec_context.gop_size = gop
        vs.options = {
            "preset": "ultrafast" if bframes == 0 else "veryfast",
            "crf": "28",
            "bf": str(bframes),
            "sc_threshold": "0",
            "keyint_min": str(gop),
        }
        if bframes:
            vs.options["x264-params"] = "open-gop=0:b-pyramid=none"
        aus = None
        samples_per_frame = 0
        if with_audio:
            aus = out.add_stream("aac", rate=48000)
            aus.layout = "mono"
            samples_per_frame = 1024
        t_audio = 0
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(_textured_frame(i, size_hw), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
            if aus is not None:
                while t_audio < (i + 1) / float(rate) * 48000:
                    tone = np.sin(np.arange(t_audio, t_audio + samples_per_frame) * 0.05)
                    af = av.AudioFrame.from_ndarray(
                        (tone * 0.3).astype(np.float32)[None, :], format="fltp", layout="mono"
                    )
                    af.sample_rate = 48000
                    af.pts = t_audio
                    for packet in aus.encode(af):
                        out.mux(packet)
                    t_audio += samples_per_frame
        for packet in vs.encode(None):
            out.mux(packet)
        if aus is not None:
            for packet in aus.encode(None):
                out.mux(packet)
    return path


def write_audio_only(path: str | Path, seconds: float = 0.5) -> Path:
    """An audio-only file: PCM in .wav, AAC otherwise (.m4a, .mp4, .mka ...)."""
    path = Path(path)
    codec = "pcm_s16le" if path.suffix.lower() == ".wav" else "aac"
    sample_rate = 16000 if codec == "pcm_s16le" else 48000
    fmt = "s16" if codec == "pcm_s16le" else "fltp"
    n = int(seconds * sample_rate)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=sample_rate)
        stream.layout = "mono"
        chunk = 1024
        for start in range(0, n, chunk):
            t = np.arange(start, min(start + chunk, n))
            wave = np.sin(t * 2 * math.pi * 440 / sample_rate) * 0.3
            data = (wave * 32767).astype(np.int16) if fmt == "s16" else wave.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(data[None, :], format=fmt, layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_empty_video(path: str | Path, size_hw: tuple[int, int] = (48, 64)) -> Path:
    """A container with a video stream (FFV1) and not one packet.

    Use .avi: FFmpeg then opens it and reports the stream with 0 frames. (An empty Matroska file
    fails to open with "End of file"; an empty MP4 track is dropped by the demuxer, leaving a file
    with no streams at all.)
    """
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=30)
        stream.pix_fmt = "bgr0"
        stream.height, stream.width = size_hw
        out.start_encoding()  # writes the header; no frame is ever encoded or muxed
    return path


def write_text_file(path: str | Path, text: str = "this is not a video\n" * 20) -> Path:
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


def write_unknown_codec_video(path: str | Path, n_frames: int = 5) -> Path:
    """An AVI file whose video stream carries a FourCC no FFmpeg build decodes ("QQQQ").

    Written as FFV1-in-AVI, then both copies of the FourCC (stream header and BITMAPINFOHEADER)
    are patched, so the demuxer sees a video stream of an unknown codec. Use the .avi suffix.
    """
    path = Path(path)
    write_indexed_video(path, n_frames, codec="ffv1", size_hw=(16, 16))
    data = path.read_bytes()
    if data[8:12] != b"AVI " or data.count(b"FFV1") < 1:
        raise RuntimeError(f"{path} is not an FFV1 AVI file; give it the .avi suffix")
    path.write_bytes(data.replace(b"FFV1", b"QQQQ"))
    return path


def find_box(data: bytes, box: bytes) -> tuple[int, int] | None:
    """(payload start, payload end) of the first top-level ISO-BMFF box ``box`` (e.g. b"mdat")."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            return None
        if kind == box:
            return pos + header, min(pos + size, len(data))
        pos += size
    return None


def corrupt_bytes(
    path: str | Path,
    n_bytes: int,
    seed: int = 0,
    *,
    region: tuple[float, float] = (0.3, 0.7),
    out: str | Path | None = None,
) -> Path:
    """XOR ``n_bytes`` random bytes (never with 0) inside a region of the media data.

    The region is a fraction of the MP4 ``mdat`` payload when there is one (so the container
    index stays intact and the corruption lands in packet data), else of the whole file.
    Writes to ``out`` (default: in place) and returns that path.
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
    span = find_box(bytes(data), b"mdat") or (0, len(data))
    lo = span[0] + int((span[1] - span[0]) * region[0])
    hi = span[0] + int((span[1] - span[0]) * region[1])
    rng = np.random.default_rng(seed)
    n = min(n_bytes, hi - lo)
    positions = rng.choice(np.arange(lo, hi), size=n, replace=False)
    masks = rng.integers(1, 256, size=n)
    for p, m in zip(positions.tolist(), masks.tolist(), strict=True):
        data[p] ^= m
    target = Path(out) if out is not None else path
    target.write_bytes(bytes(data))
    return target


def video_packet_spans(path: str | Path) -> list[tuple[int, int]]:
    """(file offset, size) of every video packet, in demux order (needs a container with positions)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (int(p.pos), int(p.size))
            for p in container.demux(stream)
            if p.size > 0 and p.pos is not None and p.pos >= 0
        ]


def corrupt_video_packets(path: str | Path, which: Iterable[int], *, out: str | Path | None = None) -> Path:
    """Overwrite the first 4 bytes of the chosen video packets (demux order) with 0xFF.

    In MP4/H.264 those bytes are the first NAL unit's length prefix, so the decoder reliably
    rejects each chosen packet with "Invalid data" while the container index stays intact.
    Writes to ``out`` (default: in place) and returns that path.
    """
    path = Path(path)
    spans = video_packet_spans(path)
    data = bytearray(path.read_bytes())
    for k in which:
        pos, size = spans[k]
        data[pos : pos + min(4, size)] = b"\xff" * min(4, size)
    target = Path(out) if out is not None else path
    target.write_bytes(bytes(data))
    return target


def truncate(path: str | Path, fraction: float, *, out: str | Path | None = None) -> Path:
    """Keep the first ``fraction`` of the file's bytes; writes to ``out`` (default: in place)."""
    path = Path(path)
    data = path.read_bytes()
    target = Path(out) if out is not None else path
    target.write_bytes(data[: int(len(data) * fraction)])
    return target
