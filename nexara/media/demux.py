"""Demuxing without decoding: packets that survive demuxer errors, a counting pass over a file's
video packets, and the seek back to its first packet."""

from __future__ import annotations

import itertools
import logging
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import av.error
import numpy as np

from nexara.errors import SourceUnreachableError

logger = logging.getLogger(__name__)

# Consecutive demuxer errors after which the rest of a file is given up.
_MAX_DEMUX_ERRORS = 8


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
