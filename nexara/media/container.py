"""Opening a source with PyAV and finding its video stream; every failure becomes a typed error."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import av
import av.error

from nexara.errors import (
    EmptyVideoError,
    MediaError,
    NotAVideoError,
    NoVideoStreamError,
    SourceUnreachableError,
    TruncatedVideoError,
    UnsupportedCodecError,
)
from nexara.media.sniff import _is_iso_bmff, _read_head, _sniff
from nexara.media.sources import _label, _url_scheme
from nexara.media.types import Source

__all__ = ["open_container", "open_video_stream"]

# Demuxers FFmpeg uses for single still images.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})


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
