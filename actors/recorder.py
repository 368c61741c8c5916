"""Evidence clips cut from the camera's own encoded packets (remux, no re-encode).

The stream reader hands every demuxed video packet to :meth:`ClipRecorder.push` with its stream time
in seconds (monotonic across reconnects) and calls :meth:`ClipRecorder.start_stream` on every
(re)connect. The recorder keeps a rolling buffer of whole GOPs: from the last keyframe at or before
``now - pre_s - margin_s`` (and before the earliest pending clip) to now; packets of an earlier
connection are never mixed with a new one, and packets before a connection's first keyframe are
dropped (they cannot be decoded alone).

:meth:`ClipRecorder.request` asks for ``[start_s - pre_s, start_s + post_s]`` and returns the path
the clip will be written to. It is written (temp file, fsync, ``os.replace``) as soon as a packet
whose decode time is past ``start_s + post_s`` arrives, on a reconnect (with what the old
connection had), or on :meth:`ClipRecorder.flush` at stream end. A clip starts at the last keyframe
at or before ``start_s - pre_s`` (or the first buffered one), takes every packet in decode order up
to the last one shown at or before ``start_s + post_s`` (so B-frames keep their references), and
its timestamps are rebased so the first decode timestamp is 0.

PyAV notes (checked on PyAV 18): demuxed ``av.Packet`` objects own their data and survive their
input container being closed, but the input *stream* does not: using a closed container's stream
as a template crashes the process. So at :meth:`start_stream` the codec parameters are copied into
a never-written in-memory NUT container whose stream is the template for every clip of that
connection. Packets are copied (``bytes(packet)``) into fresh packets on write, so one buffer can
serve overlapping clips. If the preferred container refuses the codec (VP8 in MP4, say), the clip
falls back to the other one (MP4 <-> Matroska) and the path changes suffix.

A request with a ``crop`` box (a monitor-wall cell) keeps the remux of the whole wall as
``<event>-wall.mp4`` and hands it to :class:`~actors.clip_encode.CellClipEncoder`, which writes the
cell alone, re-encoded as H.264 MP4 with faststart, to ``<event>.mp4``: that is the path the request
returns and the state it reports ("pending" until the encode is done). :meth:`ClipRecorder.flush`
waits for the encodes.

Pure logic plus file I/O: no Ray.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import os
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import av.container
import av.stream
import av.video.stream

from actors.clip_encode import CellClipEncoder, CropBox, check_box
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["ClipRecorder", "safe_clip_name"]

ClipContainer = Literal["mp4", "mkv"]
ClipState = Literal["pending", "ready", "failed", "unknown"]

#: suffix -> FFmpeg muxer name
_FORMATS: dict[str, str] = {"mp4": "mp4", "mkv": "matroska"}
_MUX_OPTIONS: dict[str, dict[str, str]] = {"mp4": {"movflags": "+faststart"}, "mkv": {}}
#: finished requests remembered for status()/clip_path() (the oldest are forgotten past this)
HISTORY = 10_000
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_clip_name(event_id: str) -> str:
    """A file-name-safe stem for ``event_id``: unsafe characters become ``_``; when anything had to
    change, a short hash of the original is appended so different ids never share a file."""
    if not isinstance(event_id, str) or not event_id.strip():
        raise InvalidInputError(f"event_id must be a non-empty string, got {event_id!r}")
    stem = _SAFE.sub("_", event_id).strip("._") or "event"
    stem = stem[:120]
    if stem != event_id:
        stem += "-" + hashlib.sha1(event_id.encode("utf-8")).hexdigest()[:8]
    return stem


@dataclass(slots=True)
class _Entry:
    packet: av.Packet
    time_s: float  # presentation time (the caller's stream seconds)
    decode_s: float  # decode time on the same clock (== time_s without B-frames)


@dataclass(slots=True)
class _Gop:
    start_s: float  # time of its keyframe
    entries: list[_Entry] = field(default_factory=list)


@dataclass(slots=True)
class _Request:
    event_id: str
    start_s: float
    from_s: float  # start_s - pre_s
    until_s: float  # start_s + post_s
    path: Path  # the remux (the whole wall when cropped)
    crop: CropBox | None = None
    cell_path: Path | None = None  # the re-encoded cell when cropped
    state: ClipState = "pending"

    @property
    def clip(self) -> Path:
        """The clip the event points at: the cell when cropped, else the remux."""
        return self.cell_path if self.cell_path is not None else self.path


@dataclass(slots=True)
class _Connection:
    number: int
    stream_index: int
    codec: str
    holder: av.container.OutputContainer | None  # keeps the template stream's codec parameters alive
    template: av.stream.Stream | None
    preferred: ClipContainer


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ClipRecorder:
    """Rolling packet buffer of one camera plus the clips requested from it. Thread-safe (one lock);
    clips are written on the thread that calls :meth:`push` / :meth:`flush` (a remux of a few seconds
    of packets: milliseconds).

    ``margin_s``: extra seconds kept before ``now - pre_s`` because alerts are confirmed after they
    start (a request usually arrives several seconds after its ``start_s``). ``max_buffer_packets``
    bounds memory on streams with very long GOPs: past it the oldest GOP is dropped (with a warning).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        pre_s: float = 5.0,
        post_s: float = 5.0,
        container: ClipContainer = "mp4",
        margin_s: float = 10.0,
        max_buffer_packets: int = 20_000,
    ) -> None:
        for name, value in (("pre_s", pre_s), ("post_s", post_s), ("margin_s", margin_s)):
            if not _finite(value) or value < 0:
                raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
        if container not in _FORMATS:
            raise InvalidInputError(f"container must be one of {sorted(_FORMATS)}, got {container!r}")
        if isinstance(max_buffer_packets, bool) or not isinstance(max_buffer_packets, int) or max_buffer_packets < 2:
            raise InvalidInputError(f"max_buffer_packets must be an integer >= 2, got {max_buffer_packets!r}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.pre_s = float(pre_s)
        self.post_s = float(post_s)
        self.margin_s = float(margin_s)
        self.container: ClipContainer = container
        self.max_buffer_packets = max_buffer_packets

        self._lock = threading.RLock()
        self._conn: _Connection | None = None
        self._connections = 0
        self._gops: deque[_Gop] = deque()
        self._buffered = 0
        self._now_s = -math.inf
        # Every request by event id (insertion order; finished ones beyond HISTORY are forgotten),
        # and the pending ones, checked on every push.
        self._requests: dict[str, _Request] = {}
        self._pending_reqs: dict[str, _Request] = {}
        self._encoding: set[str] = set()  # cropped clips remuxed, their cell being encoded
        self._encoder = CellClipEncoder()
        self._closed = False
        self._counts = {"clips_written": 0, "clips_failed": 0, "packets_dropped": 0, "fallbacks": 0}
        self._warned_long_gop = False

    # stream side -----------------------------------------------------------------------------

    def start_stream(self, stream: av.video.stream.VideoStream) -> None:
        """A (re)connect: pending clips that the old connection's packets cover are written now
        with what it had; the buffer is emptied; ``stream`` (open) becomes the codec template."""
        if getattr(stream, "type", None) != "video":
            raise InvalidInputError(f"start_stream needs an av video stream, got {stream!r}")
        with self._lock:
            self._check_open()
            if self._gops:
                last_s = self._gops[-1].entries[-1].time_s
                for req in list(self._pending()):
                    if req.from_s <= last_s:
                        self._write(req, why="reconnect")
            self._release_connection()
            self._gops.clear()
            self._buffered = 0
            self._connections += 1
            self._conn = self._make_connection(stream, self._connections)

    def push(self, packet: av.Packet, time_s: float) -> None:
        """One demuxed video packet of the current connection and its stream time in seconds."""
        if not isinstance(packet, av.Packet):
            raise TypeError(f"push needs an av.Packet, got {type(packet).__name__}")
        if not _finite(time_s):
            raise InvalidInputError(f"time_s must be a finite number of seconds, got {time_s!r}")
        with self._lock:
            self._check_open()
            conn = self._conn
            if conn is None:
                raise RuntimeError("push() before start_stream(): the recorder needs the stream first")
            if packet.size == 0:
                return  # demuxer flush packet: no data
            if packet.stream_index != conn.stream_index:
                raise InvalidInputError(
                    f"packet of stream #{packet.stream_index} pushed; the recorder follows stream #{conn.stream_index}"
                )
            decode_s = float(time_s)
            if packet.pts is not None and packet.dts is not None and packet.time_base is not None:
                decode_s = float(time_s) - float((packet.pts - packet.dts) * packet.time_base)
            self._now_s = max(self._now_s, float(time_s))
            entry = _Entry(packet=packet, time_s=float(time_s), decode_s=decode_s)
            if packet.is_keyframe:
                self._gops.append(_Gop(start_s=entry.time_s, entries=[entry]))
                self._buffered += 1
            elif self._gops:
                self._gops[-1].entries.append(entry)
                self._buffered += 1
            else:
                self._counts["packets_dropped"] += 1  # before the connection's first keyframe
                return
            for req in list(self._pending()):
                if decode_s > req.until_s:
                    self._write(req, why="post roll complete")
            self._trim()

    def flush(self) -> None:
        """Stream end: write every pending clip with what is buffered, and wait for cell encodes."""
        with self._lock:
            for req in list(self._pending()):
                self._write(req, why="flush")
        self._encoder.wait_idle()  # outside the lock: finishing an encode takes it

    def close(self) -> None:
        """Flush pending clips and release everything. Idempotent."""
        with self._lock:
            if self._closed:
                return
        self.flush()
        self._encoder.close()
        with self._lock:
            self._release_connection()
            self._gops.clear()
            self._buffered = 0
            self._closed = True

    def __enter__(self) -> ClipRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # request side ----------------------------------------------------------------------------

    def request(self, event_id: str, start_s: float, crop: CropBox | None = None) -> Path:
        """Ask for the clip of an alert starting at ``start_s`` (stream seconds); returns the path
        it will be written to. ``crop`` (x0, y0, x1, y1 in frame pixels: a wall cell) asks for that
        cell re-encoded (see the module docstring). Asking again for the same event returns the same
        path (a failed clip is retried)."""
        if not _finite(start_s):
            raise InvalidInputError(f"start_s must be a finite number of seconds, got {start_s!r}")
        if crop is not None:
            crop = check_box(crop)
        stem = safe_clip_name(event_id)
        with self._lock:
            self._check_open()
            req = self._requests.get(event_id)
            if req is not None and req.state != "failed":
                return req.clip
            suffix = self._conn.preferred if self._conn is not None else self.container
            req = _Request(
                event_id=event_id,
                start_s=float(start_s),
                from_s=float(start_s) - self.pre_s,
                until_s=float(start_s) + self.post_s,
                path=self.out_dir / (f"{stem}-wall.{suffix}" if crop else f"{stem}.{suffix}"),
                crop=crop,
                cell_path=self.out_dir / f"{stem}.mp4" if crop else None,
            )
            self._requests.pop(event_id, None)  # re-insert at the end (a retried failure)
            self._requests[event_id] = req
            self._pending_reqs[event_id] = req
            logger.debug("clip %s requested for [%.2f, %.2f] -> %s", event_id, req.from_s, req.until_s, req.clip)
            return req.clip

    def status(self, event_id: str) -> ClipState:
        with self._lock:
            req = self._requests.get(event_id)
            return "unknown" if req is None else req.state

    def is_ready(self, event_id: str) -> bool:
        return self.status(event_id) == "ready"

    def clip_path(self, event_id: str) -> Path | None:
        """Where the clip of ``event_id`` is (written) or will be (pending); None if unknown or failed."""
        with self._lock:
            req = self._requests.get(event_id)
            return None if req is None or req.state == "failed" else req.clip

    def wall_clip_path(self, event_id: str) -> Path | None:
        """The whole-wall remux kept beside a cropped clip (None for an uncropped or unknown one)."""
        with self._lock:
            req = self._requests.get(event_id)
            return None if req is None or req.crop is None else req.path

    def pending_paths(self) -> list[Path]:
        with self._lock:
            pending = [*self._pending(), *(self._requests[e] for e in self._encoding if e in self._requests)]
            return [req.clip for req in pending]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "clips_written": self._counts["clips_written"],
                "clips_failed": self._counts["clips_failed"],
                "buffered_packets": self._buffered,
                "pending": len(self._pending_reqs) + len(self._encoding),
                "packets_dropped": self._counts["packets_dropped"],
                "fallbacks": self._counts["fallbacks"],
                "connections": self._connections,
            }

    @property
    def buffered_span_s(self) -> tuple[float, float] | None:
        """(first, last) buffered packet time, or None when empty."""
        with self._lock:
            if not self._gops:
                return None
            return self._gops[0].start_s, self._gops[-1].entries[-1].time_s

    # internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("clip recorder is closed")

    def _pending(self) -> list[_Request]:
        return list(self._pending_reqs.values())

    def _finished(self, req: _Request) -> None:
        self._pending_reqs.pop(req.event_id, None)
        excess = len(self._requests) - len(self._pending_reqs) - HISTORY
        if excess > 0:
            for event_id in [k for k, r in self._requests.items() if r.state != "pending"][:excess]:
                del self._requests[event_id]

    def _make_connection(self, stream: av.video.stream.VideoStream, number: int) -> _Connection:
        codec = stream.codec_context.name if stream.codec_context is not None else "?"
        holder: av.container.OutputContainer | None = None
        template: av.stream.Stream | None = None
        errors = []
        # NUT takes nearly any codec; the others are a safety net.
        for fmt in ("nut", "matroska", "mp4"):
            try:
                holder = av.open(io.BytesIO(), "w", format=fmt)
                template = holder.add_stream_from_template(stream, opaque=True)
                break
            except (av.FFmpegError, ValueError) as exc:
                errors.append(f"{fmt}: {exc}")
                if holder is not None:
                    _close_quietly(holder)
                holder, template = None, None
        if template is None:
            logger.error("cannot keep codec parameters of %s stream (%s); clips will fail", codec, "; ".join(errors))
        preferred: ClipContainer = self.container
        if template is not None and not _accepts(self.container, template):
            preferred = _other(self.container)
            logger.info(
                "%s does not take %s packets; clips of this connection go to .%s", self.container, codec, preferred
            )
        logger.info("clip recorder: connection %d, %s stream #%d", number, codec, stream.index)
        return _Connection(
            number=number, stream_index=stream.index, codec=codec, holder=holder, template=template, preferred=preferred
        )

    def _release_connection(self) -> None:
        if self._conn is not None and self._conn.holder is not None:
            _close_quietly(self._conn.holder)
        self._conn = None

    def _trim(self) -> None:
        cutoff = self._now_s - self.pre_s - self.margin_s
        for req in self._pending():
            cutoff = min(cutoff, req.from_s)
        # Keep the last keyframe at or before the cutoff: drop a GOP once the next one starts by then.
        while len(self._gops) >= 2 and self._gops[1].start_s <= cutoff:
            self._buffered -= len(self._gops.popleft().entries)
        if self._buffered > self.max_buffer_packets:
            if not self._warned_long_gop:
                logger.warning(
                    "clip buffer over %d packets (GOP too long or clips pending too long); dropping oldest packets",
                    self.max_buffer_packets,
                )
                self._warned_long_gop = True
            while self._buffered > self.max_buffer_packets and len(self._gops) >= 2:
                self._buffered -= len(self._gops.popleft().entries)
            if self._buffered > self.max_buffer_packets:  # one giant GOP: wait for the next keyframe
                self._counts["packets_dropped"] += self._buffered
                self._gops.clear()
                self._buffered = 0

    def _select(self, req: _Request) -> list[_Entry]:
        if not self._gops:
            return []
        first = 0
        for i, gop in enumerate(self._gops):
            if gop.start_s <= req.from_s:
                first = i
            else:
                break
        entries = [e for gop in list(self._gops)[first:] for e in gop.entries]
        last = -1
        for i, e in enumerate(entries):
            if e.time_s <= req.until_s:
                last = i
        chosen = entries[: last + 1]
        if chosen and max(e.time_s for e in chosen) < req.from_s:
            return []  # the buffer ends before the clip window begins
        return chosen

    def _write(self, req: _Request, why: str) -> None:
        entries = self._select(req)
        conn = self._conn
        if not entries:
            span = self.buffered_span_s
            have = "nothing buffered" if span is None else f"buffer holds [{span[0]:.2f}, {span[1]:.2f}]"
            self._fail(req, f"no packets cover [{req.from_s:.2f}, {req.until_s:.2f}] s ({have})")
            return
        if conn is None or conn.template is None:
            self._fail(req, "no usable codec template for this connection")
            return
        errors: list[str] = []
        first = req.path.suffix.lstrip(".")
        order: list[ClipContainer] = ["mp4", "mkv"] if first == "mp4" else ["mkv", "mp4"]
        for kind in order:
            path = req.path.with_suffix("." + kind)
            try:
                _remux(entries, conn.template, path, kind)
            except (av.FFmpegError, ValueError, OSError) as exc:
                errors.append(f".{kind}: {exc}")
                logger.warning("clip %s: writing .%s failed (%s)", req.event_id, kind, exc)
                continue
            if kind != first:
                self._counts["fallbacks"] += 1
            req.path = path
            if req.crop is not None and req.cell_path is not None:
                self._pending_reqs.pop(req.event_id, None)
                self._encoding.add(req.event_id)
                self._encoder.submit(path, req.cell_path, req.crop, functools.partial(self._encoded, req))
            else:
                req.state = "ready"
                self._finished(req)
                self._counts["clips_written"] += 1
            logger.info(
                "clip %s written (%s): %s, %d packets, %.2f..%.2f s",
                req.event_id,
                why,
                path,
                len(entries),
                entries[0].time_s,
                max(e.time_s for e in entries),
            )
            return
        self._fail(req, "; ".join(errors))

    def _encoded(self, req: _Request, reason: str | None) -> None:
        """The cell encode of a cropped clip finished (encoder thread)."""
        with self._lock:
            self._encoding.discard(req.event_id)
            if self._requests.get(req.event_id) is not req:
                return  # forgotten (history) meanwhile
            if reason is not None:
                self._fail(req, f"cell clip not encoded: {reason}")
                return
            req.state = "ready"
            self._finished(req)
            self._counts["clips_written"] += 1

    def _fail(self, req: _Request, reason: str) -> None:
        req.state = "failed"
        self._finished(req)
        self._counts["clips_failed"] += 1
        logger.error("clip %s not written: %s", req.event_id, reason)


def _other(kind: ClipContainer) -> ClipContainer:
    return "mkv" if kind == "mp4" else "mp4"


def _accepts(kind: ClipContainer, template: av.stream.Stream) -> bool:
    try:
        probe = av.open(io.BytesIO(), "w", format=_FORMATS[kind])
    except (av.FFmpegError, ValueError):
        return False
    try:
        probe.add_stream_from_template(template, opaque=True)
        return True
    except (av.FFmpegError, ValueError):
        return False
    finally:
        _close_quietly(probe)


def _close_quietly(container: av.container.OutputContainer) -> None:
    try:
        container.close()
    except (av.FFmpegError, ValueError, OSError) as exc:
        logger.debug("closing a scratch container: %s", exc)


def _remux(entries: list[_Entry], template: av.stream.Stream, path: Path, kind: ClipContainer) -> None:
    """Write ``entries`` (decode order, starting at a keyframe) to ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    first = entries[0].packet
    origin = first.dts if first.dts is not None else first.pts
    try:
        out = av.open(str(tmp), "w", format=_FORMATS[kind], options=_MUX_OPTIONS[kind])
        try:
            stream = out.add_stream_from_template(template, opaque=True)
            for e in entries:
                src = e.packet
                pkt = av.Packet(bytes(src))
                if src.time_base is not None:
                    pkt.time_base = src.time_base
                if src.pts is not None:
                    pkt.pts = src.pts - origin if origin is not None else src.pts
                if src.dts is not None:
                    pkt.dts = src.dts - origin if origin is not None else src.dts
                if src.duration:
                    pkt.duration = src.duration
                pkt.is_keyframe = src.is_keyframe
                pkt.stream = stream
                out.mux(pkt)
        finally:
            out.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
