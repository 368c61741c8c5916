"""Video input on PyAV: open and probe sources, sample fixed-length clips, iterate frames.

Sources are local paths, URLs (``http(s)://``, ``rtsp://``, ``rtmp://``, HLS playlists...) or raw
bytes. Every failure a user can cause is raised as one of the typed errors of
:mod:`nexara.errors`, with a message that names the input (passwords in URLs are masked):

==============================  ==============================================================
:class:`SourceUnreachableError` missing path, permission denied, URL refused / not found /
                                timed out (``timeout_s`` bounds every network open and read)
:class:`NotAVideoError`         not a media container (text, random bytes, a still image)
:class:`TruncatedVideoError`    MP4/MOV cut short (index missing, or the data ends before the
                                frames the index lists)
:class:`NoVideoStreamError`     a valid container without a video stream (audio-only)
:class:`UnsupportedCodecError`  the video codec has no decoder in this FFmpeg build
:class:`EmptyVideoError`        a video stream that yields no decodable frame
==============================  ==============================================================

Decoding is always demux + decode packet by packet: a packet the decoder rejects is counted as
corrupt and skipped instead of ending the video (PyAV's plain ``container.decode()`` stops at the
first one). Frames are converted to RGB (and resized, by swscale in the same call) only when they
are kept, and at most the kept frames plus one are held in memory.

Frame indices are positions in presentation order (the order the decoder outputs frames).
Timestamps are seconds since the start of the video stream.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import re
import time
from array import array
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal, get_args

import av
import av.error
import numpy as np

from nexara.errors import (
    EmptyVideoError,
    MediaError,
    NotAVideoError,
    NoVideoStreamError,
    SourceUnreachableError,
    TruncatedVideoError,
    UnsupportedCodecError,
)

__all__ = [
    "DecodeStats",
    "DecodedFrame",
    "FpsSampler",
    "FrameIterator",
    "ResizePolicy",
    "SampledClip",
    "Source",
    "VideoInfo",
    "decode_packets",
    "is_live_url",
    "iter_frames",
    "open_container",
    "open_video_stream",
    "probe",
    "resize_frame",
    "sample_clip",
    "sample_indices",
    "source_label",
    "url_scheme",
]

logger = logging.getLogger(__name__)

ResizePolicy = Literal["squash", "letterbox", "center_crop"]
Source = str | Path | bytes

_POLICIES: frozenset[str] = frozenset(get_args(ResizePolicy))
# Schemes of sources that never end: sample_clip refuses them, probe does not count their frames.
_LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "udp", "rtp", "srt", "tcp"})
# First-box types of ISO-BMFF files (MP4, MOV, M4A, 3GP): bytes 4..8 of the file.
_ISO_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"})
# Demuxers FFmpeg uses for single still images.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})
# Consecutive demuxer errors after which the rest of a file is given up.
_MAX_DEMUX_ERRORS = 8
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")


# --- result types ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What :func:`probe` learns about a source's (first) video stream.

    ``frame_count`` comes from the container's metadata, or from counting the video packets when
    the container has none (Matroska/WebM); 0 for live streams, which never end. ``duration_s``
    is 0.0 when unknown (live). ``container`` is FFmpeg's demuxer name (e.g.
    ``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"matroska,webm"``).
    """

    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    frame_count: int
    has_audio: bool
    container: str


@dataclass(frozen=True, slots=True)
class SampledClip:
    """``T`` frames sampled evenly over a video by :func:`sample_clip`.

    ``frames`` is (T, H, W, 3) uint8 RGB; ``indices`` (int64) the presentation-order index of the
    source frame each row is (equal to :func:`sample_indices` unless frames were lost to
    corruption, when a missing frame is replaced by the nearest decoded one); ``times_s``
    (float64) their timestamps in seconds since the stream start. ``decoded_frames`` counts every
    frame the decoder produced, ``corrupt_packets`` the packets it rejected (and demuxer errors).
    """

    frames: np.ndarray
    indices: np.ndarray
    times_s: np.ndarray
    info: VideoInfo
    decoded_frames: int
    corrupt_packets: int


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One frame from :func:`iter_frames`: RGB uint8 (H, W, 3), its index among decoded frames
    (0-based, presentation order) and its time in seconds since the stream start."""

    rgb: np.ndarray
    index: int
    time_s: float


@dataclass(slots=True)
class DecodeStats:
    """Counters a running decode updates in place (deliberately mutable, unlike the results).

    ``packets``: non-empty video packets demuxed; ``decoded_frames``: frames out of the decoder;
    ``corrupt_packets``: packets the decoder rejected plus demuxer errors; ``yielded_frames``:
    frames handed to the caller.
    """

    packets: int = 0
    decoded_frames: int = 0
    corrupt_packets: int = 0
    yielded_frames: int = 0


# --- sources and opening -----------------------------------------------------------------------


def _url_scheme(source: Source) -> str | None:
    if not isinstance(source, str):
        return None
    match = _URL_RE.match(source)
    if match is None:
        return None
    scheme = match.group("scheme").lower()
    return None if scheme == "file" else scheme


def _redact(url: str) -> str:
    """Mask the password of ``scheme://user:password@host`` URLs."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


def _label(source: Source) -> str:
    """How error messages and logs name a source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    if _url_scheme(source) is not None:
        return _redact(str(source))
    if isinstance(source, str) and source.startswith("file://"):
        return source[len("file://") :]
    return str(source)


def _is_live(source: Source) -> bool:
    scheme = _url_scheme(source)
    if scheme is None:
        return False
    return scheme.split("+")[0] in _LIVE_SCHEMES


def url_scheme(source: Source) -> str | None:
    """The lower-case URL scheme of ``source`` (``"rtsp"``, ``"http"``...), None for paths, bytes
    and ``file://`` URLs."""
    return _url_scheme(source)


def is_live_url(source: Source) -> bool:
    """True for URLs of streams that never end (rtsp, rtmp, udp, srt, ...; not http/HLS)."""
    return _is_live(source)


def source_label(source: Source) -> str:
    """How errors and logs name ``source``: the path, the URL with its password masked, or
    ``<N bytes in memory>``."""
    return _label(source)


def _sniff(head: bytes) -> str:
    """A short guess of what a non-video file is, for error messages ('' when unsure)."""
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image"
    if head.startswith(b"%PDF"):
        return "it is a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "it is a ZIP archive"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it looks like a text file"
    return ""


def _is_iso_bmff(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] in _ISO_BMFF_BOXES


def _read_head(source: Source, label: str) -> bytes:
    """First bytes of a local file or a bytes source (b'' for URLs); checks a path is readable."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise NotAVideoError(label, "the input is empty (0 bytes), not a video")
        return bytes(source[:32])
    if _url_scheme(source) is not None:
        return b""
    path = Path(_label(source))
    if not path.exists():
        raise SourceUnreachableError(label, "no such file")
    if path.is_dir():
        raise NotAVideoError(label, "is a directory, not a video file")
    try:
        with path.open("rb") as handle:
            head = handle.read(32)
    except PermissionError as exc:
        raise SourceUnreachableError(label, "permission denied") from exc
    except OSError as exc:
        raise SourceUnreachableError(label, f"cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise NotAVideoError(label, "the file is empty (0 bytes), not a video")
    return head


def _open_error(
    exc: Exception, label: str, *, is_url: bool, head: bytes, elapsed_s: float, timeout_s: float
) -> MediaError:
    """Translate an exception from ``av.open`` into a typed error."""
    detail = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, (av.error.ExitError, av.error.TimeoutError, TimeoutError)):
        return SourceUnreachableError(label, f"no answer within {timeout_s:g} s (timed out)")
    if isinstance(exc, av.error.HTTPError):
        return SourceUnreachableError(label, f"the server answered with an error ({detail})")
    if isinstance(exc, av.error.PermissionError):
        return SourceUnreachableError(label, "permission denied")
    if isinstance(exc, (av.error.FileNotFoundError, FileNotFoundError)):
        return SourceUnreachableError(label, "not found" if is_url else "no such file")
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return SourceUnreachableError(label, "this URL scheme is not supported by FFmpeg")
    if isinstance(exc, av.error.EOFError):
        if is_url:
            return SourceUnreachableError(label, "the server closed the connection without data")
        return EmptyVideoError(
            label, "the file ends right after its header: it holds no video data (empty or cut short)"
        )
    if isinstance(exc, av.error.InvalidDataError):
        if is_url:
            if elapsed_s >= 0.9 * timeout_s:
                return SourceUnreachableError(label, f"no usable answer within {timeout_s:g} s (timed out)")
            return NotAVideoError(label, "the server's answer is not a video FFmpeg can read")
        if _is_iso_bmff(head):
            return TruncatedVideoError(
                label,
                "the MP4/MOV file is cut short: its index (moov atom) is missing or unreadable "
                "(an interrupted download or a recording still being written)",
            )
        hint = _sniff(head)
        return NotAVideoError(label, "not a video file FFmpeg can read" + (f"; {hint}" if hint else ""))
    if is_url or isinstance(exc, ConnectionError):
        return SourceUnreachableError(label, f"cannot be opened ({detail})")
    return NotAVideoError(label, f"FFmpeg cannot open it as a video ({detail})")


def _open_raw(
    source: Source,
    label: str,
    timeout_s: float,
    options: Mapping[str, str] | None,
    input_format: str | None = None,
) -> tuple[av.container.InputContainer, bytes]:
    # with an explicit input format (a device such as x11grab or v4l2) the source is not a file
    head = _read_head(source, label) if input_format is None else b""
    is_url = _url_scheme(source) is not None
    kwargs: dict[str, object] = {"metadata_errors": "replace"}
    if options:
        kwargs["options"] = dict(options)
    if input_format is not None:
        kwargs["format"] = input_format
    if is_url:
        kwargs["timeout"] = (timeout_s, timeout_s)
    target: object
    if isinstance(source, (bytes, bytearray, memoryview)):
        target = io.BytesIO(source)
    elif is_url or input_format is not None:
        target = str(source)
    else:
        target = _label(source)  # a path, with any file:// prefix stripped
    started = time.monotonic()
    if input_format is not None and input_format not in av.formats_available:
        # (like an unknown URL scheme: PyAV would raise a plain ValueError)
        raise SourceUnreachableError(label, f"this FFmpeg build has no input format {input_format!r}")
    try:
        container = av.open(target, mode="r", **kwargs)  # type: ignore[call-overload]
    except (av.error.FFmpegError, OSError) as exc:
        if input_format is not None and isinstance(exc, OSError):  # a device that is missing or busy
            detail = exc.strerror or str(exc)
            raise SourceUnreachableError(label, f"the {input_format} input cannot be opened ({detail})") from exc
        raise _open_error(
            exc,
            label,
            is_url=is_url,
            head=head,
            elapsed_s=time.monotonic() - started,
            timeout_s=timeout_s,
        ) from exc
    return container, head


def _video_stream(container: av.container.InputContainer, label: str) -> av.VideoStream:
    """The first real video stream (cover art is skipped), or the typed error saying why not."""
    fmt = container.format.name
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
        codec = container.streams.video[0].name if container.streams.video else fmt
        raise NotAVideoError(label, f"is a still image ({codec}), not a video")
    if not container.streams:
        raise EmptyVideoError(label, "the container holds no streams at all (nothing was recorded)")
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        kinds = ", ".join(f"{s.type} ({s.name or 'unknown codec'})" for s in container.streams)
        raise NoVideoStreamError(label, f"has no video stream, only: {kinds}")
    stream = videos[0]
    if stream.codec_context is None:
        raise UnsupportedCodecError(label, "its video codec is unknown to this FFmpeg build (no decoder for it)")
    return stream


@contextmanager
def open_container(
    source: Source, *, timeout_s: float = 10.0, options: Mapping[str, str] | None = None
) -> Iterator[av.container.InputContainer]:
    """Open ``source`` for reading and check that it has a decodable video stream.

    ``source``: a path, a URL or the raw bytes of a file. For URLs every network open and read is
    bounded by ``timeout_s``. ``options``: extra FFmpeg demuxer/protocol options (for example
    ``{"rtsp_transport": "tcp"}``). Raises the typed errors listed in the module docstring.
    The container is closed when the block exits.
    """
    label = _label(source)
    container, _ = _open_raw(source, label, timeout_s, options)
    try:
        _video_stream(container, label)
        yield container
    finally:
        container.close()


def open_video_stream(
    source: Source,
    *,
    timeout_s: float = 10.0,
    options: Mapping[str, str] | None = None,
    input_format: str | None = None,
) -> tuple[av.container.InputContainer, av.VideoStream]:
    """Open ``source`` and return it with its first real video stream; the caller closes the
    container. Same checks and typed errors as :func:`open_container`; ``timeout_s`` bounds every
    network open and read of URLs. ``input_format`` forces an FFmpeg input format, e.g.
    ``"x11grab"`` (screen capture, source ``":0.0"``) or ``"v4l2"`` (source ``"/dev/video0"``);
    the source is then handed to FFmpeg as is (not checked as a file).
    """
    label = _label(source)
    container, _ = _open_raw(source, label, timeout_s, options, input_format)
    try:
        return container, _video_stream(container, label)
    except BaseException:
        container.close()
        raise


# --- probing -----------------------------------------------------------------------------------


def _stream_fps(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return 0.0


def _duration_s(container: av.container.InputContainer, stream: av.VideoStream, frame_count: int, fps: float) -> float:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if frame_count > 0 and fps > 0:
        return frame_count / fps
    return 0.0


def _make_info(container: av.container.InputContainer, stream: av.VideoStream, frame_count: int) -> VideoInfo:
    fps = _stream_fps(stream)
    codec_context = stream.codec_context
    return VideoInfo(
        duration_s=_duration_s(container, stream, frame_count, fps),
        fps=fps,
        width=int(codec_context.width or 0),
        height=int(codec_context.height or 0),
        codec=str(codec_context.name),
        frame_count=int(frame_count),
        has_audio=len(container.streams.audio) > 0,
        container=str(container.format.name),
    )


@dataclass(frozen=True, slots=True)
class _PacketScan:
    total: int  # every non-empty video packet, discarded ones included
    pts: np.ndarray | None  # sorted pts of the kept packets, None when they cannot index frames
    kept: int  # packets that yield a frame (not flagged discard)
    demux_errors: int
    first: tuple[int | None, int | None, int | None] | None  # (pts, dts, pos) of the first packet


def _demux(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    label: str,
    *,
    packets: Iterator[av.Packet] | None = None,
    on_error: Callable[[], None] | None = None,
    raise_io_errors: bool = False,
) -> Iterator[av.Packet]:
    """Video packets (continuing ``packets`` when given). A demuxer error is logged, reported through
    ``on_error`` and demuxing resumes; after ``_MAX_DEMUX_ERRORS`` errors in a row it gives up. A read
    timeout raises :class:`SourceUnreachableError`, and so does an I/O error (a connection reset or cut
    short: an ``errno`` error, not corrupt data) when ``raise_io_errors``."""
    demuxer = packets if packets is not None else container.demux(stream)
    errors_in_row = 0
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            return
        except av.error.ExitError as exc:
            raise SourceUnreachableError(label, "stopped sending data (read timed out)") from exc
        except av.error.FFmpegError as exc:
            if raise_io_errors and isinstance(exc, OSError):
                detail = exc.strerror or str(exc)
                raise SourceUnreachableError(label, f"reading failed ({detail})") from exc
            errors_in_row += 1
            logger.debug("%s: demuxer error: %s", label, exc)
            if on_error is not None:
                on_error()
            if errors_in_row >= _MAX_DEMUX_ERRORS:
                logger.warning("%s: giving up after %d demuxer errors in a row", label, errors_in_row)
                return
            demuxer = container.demux(stream)
            continue
        errors_in_row = 0
        yield packet


def _scan_packets(container: av.container.InputContainer, stream: av.VideoStream, label: str) -> _PacketScan:
    """Demux (no decode) the video stream: count packets and collect their pts."""
    pts = array("q")
    total = kept = 0
    missing_pts = False
    first: tuple[int | None, int | None, int | None] | None = None
    demux_errors = [0]

    def count_error() -> None:
        demux_errors[0] += 1

    for packet in _demux(container, stream, label, on_error=count_error):
        if packet.size == 0:
            continue
        if total == 0:
            first = (packet.pts, packet.dts, packet.pos)
        total += 1
        if packet.is_discard:
            continue
        kept += 1
        if packet.pts is None:
            missing_pts = True
        else:
            pts.append(int(packet.pts))
    array_: np.ndarray | None = None
    if not missing_pts and pts:
        sorted_pts = np.sort(np.frombuffer(pts, dtype=np.int64))
        if not np.any(np.diff(sorted_pts) == 0):  # else: count decoded frames instead
            array_ = sorted_pts
    return _PacketScan(total=total, pts=array_, kept=kept, demux_errors=demux_errors[0], first=first)


def _rewind(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    first: tuple[int | None, int | None, int | None] | None,
) -> Iterator[av.Packet] | None:
    """Seek back to the first video packet after a counting pass (much cheaper than reopening:
    ``av.open`` probes the streams by decoding). Returns the packets from the first one on, or
    None when the seek does not land exactly on it (the caller then reopens)."""
    if first is None:
        return None
    target = first[1] if first[1] is not None else first[0]
    try:
        if target is None:
            container.seek(0)
        else:
            container.seek(target, stream=stream, backward=True)
        demuxer = container.demux(stream)
        for packet in demuxer:
            if packet.size > 0:
                break
        else:
            return None
    except av.error.FFmpegError:
        return None
    if (packet.pts, packet.dts, packet.pos) != first:
        return None
    return itertools.chain([packet], demuxer)


def probe(source: Source, *, timeout_s: float = 10.0) -> VideoInfo:
    """Metadata of ``source``'s video stream, without decoding.

    ``frame_count`` is the container's frame count when it has one, else the number of video
    packets found by demuxing the whole file (cheap: no decoding); 0 for live streams.
    """
    label = _label(source)
    with open_container(source, timeout_s=timeout_s) as container:
        stream = _video_stream(container, label)
        frame_count = int(stream.frames or 0)
        if frame_count <= 0 and not _is_live(source):
            frame_count = _scan_packets(container, stream, label).kept
        return _make_info(container, stream, frame_count)


# --- resizing ----------------------------------------------------------------------------------


def _check_size(size_hw: tuple[int, int] | None) -> None:
    if size_hw is None:
        return
    if len(size_hw) != 2 or int(size_hw[0]) < 1 or int(size_hw[1]) < 1:
        raise ValueError(f"size_hw must be (height, width) with both >= 1, got {size_hw!r}")


def _check_policy(policy: str) -> None:
    if policy not in _POLICIES:
        raise ValueError(f"resize policy must be one of {sorted(_POLICIES)}, got {policy!r}")


def _fit_inside(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """Largest (h, w) with the source's aspect ratio that fits inside ``dst_hw`` (letterbox)."""
    scale = min(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    return (
        min(dst_hw[0], max(1, round(src_hw[0] * scale))),
        min(dst_hw[1], max(1, round(src_hw[1] * scale))),
    )


def _cover(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """Smallest (h, w) with the source's aspect ratio that covers ``dst_hw`` (centre crop)."""
    scale = max(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    return (
        max(dst_hw[0], math.ceil(src_hw[0] * scale - 1e-9)),
        max(dst_hw[1], math.ceil(src_hw[1] * scale - 1e-9)),
    )


def _frame_to_rgb(frame: av.VideoFrame, size_hw: tuple[int, int] | None, policy: ResizePolicy) -> np.ndarray:
    """Convert (and resize, in the same swscale call) one decoded frame to (H, W, 3) uint8 RGB."""
    if size_hw is None or (frame.height, frame.width) == tuple(size_hw):
        return frame.to_ndarray(format="rgb24")
    dst_h, dst_w = int(size_hw[0]), int(size_hw[1])
    if policy == "squash":
        return frame.reformat(width=dst_w, height=dst_h, format="rgb24").to_ndarray()
    if policy == "letterbox":
        fit_h, fit_w = _fit_inside((frame.height, frame.width), (dst_h, dst_w))
        inner = frame.reformat(width=fit_w, height=fit_h, format="rgb24").to_ndarray()
        out = np.zeros((dst_h, dst_w, 3), dtype=np.uint8)
        top, left = (dst_h - fit_h) // 2, (dst_w - fit_w) // 2
        out[top : top + fit_h, left : left + fit_w] = inner
        return out
    if policy == "center_crop":
        cov_h, cov_w = _cover((frame.height, frame.width), (dst_h, dst_w))
        full = frame.reformat(width=cov_w, height=cov_h, format="rgb24").to_ndarray()
        top, left = (cov_h - dst_h) // 2, (cov_w - dst_w) // 2
        return np.ascontiguousarray(full[top : top + dst_h, left : left + dst_w])
    raise ValueError(f"resize policy must be one of {sorted(_POLICIES)}, got {policy!r}")


def resize_frame(rgb: np.ndarray, size_hw: tuple[int, int], policy: ResizePolicy) -> np.ndarray:
    """Resize one (H, W, 3) uint8 RGB image to ``size_hw`` (swscale bilinear).

    ``"squash"`` stretches to the size; ``"letterbox"`` keeps the aspect ratio and pads with black,
    centred; ``"center_crop"`` keeps the aspect ratio, fills the size and crops the centre.
    """
    _check_size(size_hw)
    _check_policy(policy)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return np.ascontiguousarray(_frame_to_rgb(frame, size_hw, policy))


# --- decoding ----------------------------------------------------------------------------------


def _configure_decoder(stream: av.VideoStream, threads: int) -> None:
    codec_context = stream.codec_context
    if threads == 1:
        codec_context.thread_count = 1
        return
    codec_context.thread_type = "AUTO"
    codec_context.thread_count = max(0, threads)


def _decoded_frames(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    stats: DecodeStats,
    label: str,
    packets: Iterator[av.Packet] | None = None,
    on_packet: Callable[[av.Packet], None] | None = None,
    raise_io_errors: bool = False,
) -> Iterator[av.VideoFrame]:
    """Demux the video stream (or continue ``packets``) and decode it packet by packet, skipping
    corrupt packets. ``on_packet`` sees every non-empty video packet before it is decoded;
    ``raise_io_errors``: see :func:`_demux`."""
    codec_context = stream.codec_context
    corrupt_before = stats.corrupt_packets

    def count_error() -> None:
        stats.corrupt_packets += 1

    for packet in _demux(
        container, stream, label, packets=packets, on_error=count_error, raise_io_errors=raise_io_errors
    ):
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker; flushed below
        stats.packets += 1
        if on_packet is not None:
            on_packet(packet)
        try:
            frames = codec_context.decode(packet)
        except av.error.FFmpegError as exc:
            stats.corrupt_packets += 1
            logger.debug("%s: skipped corrupt packet (pts %s): %s", label, packet.pts, exc)
            continue
        for frame in frames:
            stats.decoded_frames += 1
            yield frame
    try:
        frames = codec_context.decode(None)
    except av.error.FFmpegError as exc:
        stats.corrupt_packets += 1
        logger.debug("%s: error while flushing the decoder: %s", label, exc)
        frames = []
    for frame in frames:
        stats.decoded_frames += 1
        yield frame
    if stats.corrupt_packets > corrupt_before:
        logger.warning(
            "%s: skipped %d corrupt packet(s); %d frame(s) decoded",
            label,
            stats.corrupt_packets - corrupt_before,
            stats.decoded_frames,
        )


def decode_packets(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    *,
    stats: DecodeStats | None = None,
    label: str = "",
    on_packet: Callable[[av.Packet], None] | None = None,
    raise_io_errors: bool = False,
) -> Iterator[av.VideoFrame]:
    """Demux ``stream`` of ``container`` to its end and decode it packet by packet (then flush the
    decoder), yielding the decoded frames.

    A packet the decoder rejects, or a demuxer error, is counted in ``stats.corrupt_packets`` and
    skipped; after 8 demuxer errors in a row the rest is given up (the iterator ends). A read
    timeout of a URL raises :class:`SourceUnreachableError`; so does an I/O error of the transport
    (connection reset, response cut short) when ``raise_io_errors`` (for network sources: otherwise
    it counts as a demuxer error). ``on_packet`` is called with every non-empty video packet (decode
    order) before it is decoded. ``label`` names the source in logs.
    """
    return _decoded_frames(
        container,
        stream,
        stats if stats is not None else DecodeStats(),
        label,
        on_packet=on_packet,
        raise_io_errors=raise_io_errors,
    )


class FpsSampler:
    """Picks frames from a stream of timestamps at (about) ``fps``: the first frame at or after each
    ``1/fps`` slot after the first frame, with a tolerance (default: half a source frame,
    ``0.5 / native_fps``, 1 ms when that is unknown) so timestamp rounding does not shift the pick.
    A source slower than ``fps`` keeps every frame. Kept times are strictly increasing.
    This is the rule :func:`iter_frames` uses.
    """

    __slots__ = ("_first", "_fps", "_next", "tolerance_s")

    def __init__(self, fps: float, native_fps: float = 0.0, *, tolerance_s: float | None = None) -> None:
        if not fps > 0 or not math.isfinite(fps):
            raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
        self._fps = float(fps)
        if tolerance_s is None:
            tolerance_s = 0.5 / native_fps if native_fps > 0 else 1e-3
        self.tolerance_s = float(tolerance_s)
        self._first = 0.0
        self._next: float | None = None

    def keep(self, t: float) -> bool:
        """Whether the frame at time ``t`` (seconds, non-decreasing calls) is kept."""
        tol = self.tolerance_s
        if self._next is None:
            self._first = t
            self._next = t
        if t < self._next - tol:
            return False
        slot = math.floor((t - self._first + tol) * self._fps)
        self._next = self._first + (slot + 1) / self._fps
        return True


class _Clock:
    """Seconds since the stream start for decoded frames."""

    __slots__ = ("_fps", "_start", "_time_base")

    def __init__(self, stream: av.VideoStream) -> None:
        self._time_base: Fraction | None = stream.time_base
        self._start: int | None = stream.start_time
        self._fps = _stream_fps(stream)

    def __call__(self, frame: av.VideoFrame, index: int) -> float:
        if frame.pts is None or self._time_base is None:
            return index / self._fps if self._fps > 0 else float(index)
        if self._start is None:
            self._start = int(frame.pts)
        return float((frame.pts - self._start) * self._time_base)


def sample_indices(frame_count: int, num_frames: int) -> np.ndarray:
    """``num_frames`` frame indices spread evenly over ``frame_count`` frames, first and last
    included (repeats when ``num_frames > frame_count``)."""
    if frame_count < 1 or num_frames < 1:
        raise ValueError(f"need frame_count >= 1 and num_frames >= 1, got {frame_count} and {num_frames}")
    return np.linspace(0, frame_count - 1, num_frames).round().astype(np.int64)


def sample_clip(
    source: Source,
    *,
    num_frames: int = 16,
    size_hw: tuple[int, int] | None = (224, 224),
    resize: ResizePolicy = "squash",
    timeout_s: float = 10.0,
    allow_truncated: bool = False,
    threads: int = 0,
) -> SampledClip:
    """Sample ``num_frames`` frames spread evenly over a whole (finite) video.

    The frame count comes from a demux-only pass (no decoding; for URLs the container's metadata
    is used when it has one), the targets from :func:`sample_indices`, then ONE sequential decode
    keeps the targets (no seeking; RGB conversion and resize only for targets). Corrupt packets
    are skipped and counted; a target frame that never decodes is replaced by the nearest decoded
    frame, so ``T`` frames come back as long as one frame decodes.

    ``size_hw=None`` keeps the native size. ``resize``: see :func:`resize_frame`.
    ``allow_truncated``: an MP4/MOV whose data ends before the frames its index lists raises
    :class:`TruncatedVideoError` unless this is True (then the readable part is sampled).
    ``threads``: decoder threads, 0 = FFmpeg's choice (frame + slice threading), 1 = one thread.

    Memory stays bounded for long videos: only the kept frames, one previous frame and an int64
    per packet (timestamps) are held. Decoding time still grows with the video's length.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    _check_size(size_hw)
    _check_policy(resize)
    label = _label(source)
    if _is_live(source):
        raise MediaError(label, "is a live stream; sample_clip needs a finite video (use iter_frames for streams)")
    network = _url_scheme(source) is not None

    scan: _PacketScan | None = None
    packets: Iterator[av.Packet] | None = None
    stats = DecodeStats()
    with ExitStack() as stack:
        container = stack.enter_context(open_container(source, timeout_s=timeout_s))
        stream = _video_stream(container, label)
        declared = int(stream.frames or 0)
        if not (network and declared > 0):
            scan = _scan_packets(container, stream, label)
            _check_complete(container, label, declared, scan, allow_truncated)
            if scan.kept > 0:
                packets = _rewind(container, stream, scan.first)
                if packets is None:
                    logger.debug("%s: cannot seek back to the first packet; reopening", label)
                    container.close()
                    container = stack.enter_context(open_container(source, timeout_s=timeout_s))
                    stream = _video_stream(container, label)
        frame_count = scan.kept if scan is not None else declared
        info = _make_info(container, stream, frame_count)
        if frame_count <= 0:
            raise EmptyVideoError(label, "its video stream holds no frames")
        _configure_decoder(stream, threads)
        pts_index = scan.pts if scan is not None and scan.pts is not None and len(scan.pts) == frame_count else None
        picked = _pick_targets(
            _decoded_frames(container, stream, stats, label, packets),
            targets=sample_indices(frame_count, num_frames),
            pts_index=pts_index,
            clock=_Clock(stream),
            size_hw=size_hw,
            policy=resize,
        )
    if picked is None:
        raise EmptyVideoError(
            label,
            f"none of its {frame_count} video packets could be decoded ({stats.corrupt_packets} rejected as corrupt)",
        )
    frames, indices, times = picked
    return SampledClip(
        frames=frames,
        indices=indices,
        times_s=times,
        info=info,
        decoded_frames=stats.decoded_frames,
        corrupt_packets=stats.corrupt_packets,
    )


def _check_complete(
    container: av.container.InputContainer,
    label: str,
    declared: int,
    scan: _PacketScan,
    allow_truncated: bool,
) -> None:
    """Raise TruncatedVideoError when an MP4/MOV index lists more frames than can be read."""
    is_mov = "mov" in container.format.name or "mp4" in container.format.name
    if not is_mov or declared <= 0 or scan.total >= declared:
        return
    if scan.kept == 0:
        raise TruncatedVideoError(label, f"its index lists {declared} frames but the file ends before the first one")
    if not allow_truncated:
        raise TruncatedVideoError(
            label,
            f"the file is cut short: its index lists {declared} frames but the data ends after "
            f"{scan.total} (pass allow_truncated=True to use the readable part)",
        )
    logger.warning("%s: cut short, sampling the %d readable of %d frames", label, scan.total, declared)


def _pick_targets(
    frames: Iterator[av.VideoFrame],
    *,
    targets: np.ndarray,
    pts_index: np.ndarray | None,
    clock: _Clock,
    size_hw: tuple[int, int] | None,
    policy: ResizePolicy,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Keep the target frames from one pass over decoded frames (nearest decoded frame for
    targets that never decode). Returns (frames, source indices, times) or None if no frame."""
    pending = deque(sorted(set(targets.tolist())))
    chosen: dict[int, int] = {}  # target index -> source index of the frame used for it
    kept: dict[int, tuple[np.ndarray, float]] = {}  # source index -> (rgb, time)
    prev: tuple[int, av.VideoFrame] | None = None
    last_index = -1

    def keep(index: int, frame: av.VideoFrame) -> None:
        if index not in kept:
            kept[index] = (_frame_to_rgb(frame, size_hw, policy), clock(frame, index))

    for frame in frames:
        index = last_index + 1
        if pts_index is not None and frame.pts is not None:
            # the frame's index is the rank of its pts among all packets' pts
            pos = int(np.searchsorted(pts_index, frame.pts))
            if pos < len(pts_index) and int(pts_index[pos]) == frame.pts:
                index = pos
        if index <= last_index:
            continue  # a repeated timestamp: keep the first frame decoded for it
        last_index = index
        while pending and pending[0] < index:  # targets that never decoded
            target = pending.popleft()
            if prev is not None and target - prev[0] <= index - target:
                keep(*prev)
                chosen[target] = prev[0]
            else:
                keep(index, frame)
                chosen[target] = index
        if pending and pending[0] == index:
            keep(index, frame)
            chosen[pending.popleft()] = index
        prev = (index, frame)
        if not pending:
            break
    if prev is None:
        return None
    while pending:  # targets after the last decoded frame
        keep(*prev)
        chosen[pending.popleft()] = prev[0]
    sources = [chosen[int(t)] for t in targets.tolist()]
    return (
        np.stack([kept[s][0] for s in sources]),
        np.asarray(sources, dtype=np.int64),
        np.asarray([kept[s][1] for s in sources], dtype=np.float64),
    )


# --- streaming ---------------------------------------------------------------------------------


class FrameIterator(Iterator[DecodedFrame]):
    """Iterator of :class:`DecodedFrame` returned by :func:`iter_frames`.

    ``stats`` (:class:`DecodeStats`) is updated while iterating (``stats.corrupt_packets`` counts
    packets skipped as corrupt). ``native_fps`` is the stream's frame rate (0.0 if unknown). The
    source is closed when iteration ends, on :meth:`close`, or when used as a context manager.
    """

    def __init__(
        self,
        source: Source,
        *,
        fps: float | None,
        size_hw: tuple[int, int] | None,
        resize: ResizePolicy,
        timeout_s: float,
        threads: int,
        options: Mapping[str, str] | None,
    ) -> None:
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be > 0 or None, got {fps!r}")
        _check_size(size_hw)
        _check_policy(resize)
        self.label = _label(source)
        self.stats = DecodeStats()
        self._container, _ = _open_raw(source, self.label, timeout_s, options)
        try:
            self._stream = _video_stream(self._container, self.label)
            _configure_decoder(self._stream, threads)
        except BaseException:
            self._container.close()
            raise
        self.native_fps = _stream_fps(self._stream)
        self._fps = fps
        self._size_hw = size_hw
        self._resize: ResizePolicy = resize
        self._gen = self._run()

    def _run(self) -> Generator[DecodedFrame, None, None]:
        clock = _Clock(self._stream)
        # A frame is kept when its time reaches the next 1/fps slot, with a tolerance of half a
        # source frame so timestamp rounding (e.g. 1 ms in Matroska) does not shift the pick.
        sampler = FpsSampler(self._fps, self.native_fps) if self._fps is not None else None
        try:
            index = -1
            for frame in _decoded_frames(self._container, self._stream, self.stats, self.label):
                index += 1
                t = clock(frame, index)
                if sampler is not None and not sampler.keep(t):
                    continue
                rgb = _frame_to_rgb(frame, self._size_hw, self._resize)
                self.stats.yielded_frames += 1
                yield DecodedFrame(rgb=rgb, index=index, time_s=t)
            if self.stats.decoded_frames == 0:
                raise EmptyVideoError(self.label, "no frame of its video stream could be decoded")
        finally:
            self._container.close()

    def __iter__(self) -> FrameIterator:
        return self

    def __next__(self) -> DecodedFrame:
        return next(self._gen)

    def close(self) -> None:
        """Stop decoding and close the source (safe to call more than once)."""
        self._gen.close()
        self._container.close()

    def __enter__(self) -> FrameIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def iter_frames(
    source: Source,
    *,
    fps: float | None,
    size_hw: tuple[int, int] | None = None,
    resize: ResizePolicy = "squash",
    timeout_s: float = 10.0,
    threads: int = 0,
    options: Mapping[str, str] | None = None,
) -> FrameIterator:
    """Decode ``source`` front to back, for long videos and live streams.

    ``fps=None`` yields every frame; otherwise a frame is yielded when its timestamp reaches the
    next ``1/fps`` slot after the first frame (e.g. every 6th frame of a 30 fps video at
    ``fps=5``). Corrupt packets are skipped and counted in the iterator's ``stats``. The source is
    opened (and checked) right away, so open errors raise here; read timeouts of URLs raise
    :class:`SourceUnreachableError` while iterating. Use ``with iter_frames(...) as frames:`` or
    call ``close()`` to stop early.
    """
    return FrameIterator(
        source,
        fps=fps,
        size_hw=size_hw,
        resize=resize,
        timeout_s=timeout_s,
        threads=threads,
        options=options,
    )
