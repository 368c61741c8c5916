"""Decoding packet by packet: a packet the decoder rejects is counted as corrupt and skipped instead
of ending the video (PyAV's plain ``container.decode()`` stops at the first one)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import av.error

from nexara.media.demux import _demux
from nexara.media.probe import _stream_fps
from nexara.media.types import DecodeStats

__all__ = ["decode_packets"]

logger = logging.getLogger(__name__)


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
