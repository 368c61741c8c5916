"""Live source reading for the per-camera stream actors (pure logic, no Ray).

:class:`StreamReader` turns a :class:`SourceConfig` (a file, an ``rtsp://`` / ``http(s)://`` / HLS URL,
or a capture device with an FFmpeg input ``format``) into an endless iterator of :class:`LiveFrame`:

* demux + decode packet by packet (:func:`nexara.media.decode_packets`: corrupt packets are skipped and
  counted), every video packet handed to ``on_packet(packet, stream_time_s)`` first (the evidence-clip
  recorder remuxes them), ``on_connect(stream)`` on every (re)open;
* frames subsampled to ``fps`` with the rule of :func:`nexara.media.iter_frames`
  (:class:`nexara.media.FpsSampler`: the first decoded frame at or after each ``1/fps`` slot, within half
  a source frame of timestamp rounding; every frame when the source is slower than ``fps``), so live
  windows see the frames ``clip_motion`` sees on the same video;
* one stream clock: ``offset + (pts - origin) * time_base`` where ``origin`` is the pts of the
  connection's first packet (its keyframe: the first frame shown), for frames and for packets alike
  (a packet is timed by the frame it carries, so with B-frames packet times step back in decode
  order; without B-frames they increase). On a
  file loop the next offset is the last time plus one frame interval, on a reconnect the last time plus
  the wall-clock gap (at least one frame interval), so times never go back;
* reconnects with exponential :class:`Backoff` after a read error, a read timeout or the end of a URL
  or device source (a live stream should not end), until ``max_reconnects`` (counted over the
  reader's life) is spent: then the iterator ends, the state is ``"failed"`` and the error is logged
  and kept in :meth:`StreamReader.stats`. Without reconnects a failure raises the typed
  :class:`nexara.errors.MediaError` (a path that is not a video raises at the first ``next()``);
* ``pacing="realtime"`` sleeps so the frames of files (and http/HLS files) come out at their stream
  times; live schemes (rtsp, rtmp, udp, srt...) and devices pace themselves and are never delayed.

A blocked network read is bounded by ``read_timeout_s``; ``stop`` is checked between packets and
interrupts the pacing and backoff waits at once.

A source with a ``source_policy`` (every camera added over the HTTP API) is checked again before every
(re)connect (:func:`nexara.source_policy.check_source`: a host name that now resolves to a refused
address fails the source for good, state ``"failed"``, no retry) and is opened with FFmpeg's
``protocol_whitelist`` limited to the protocols its scheme needs (``file`` only for files) and
``format_whitelist`` to the policy's ``demuxers``.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import av
import av.container
import av.video.stream
import numpy as np
from pydantic import Field

from nexara.config import ResolvedCamera, SourceSettings, expand_env
from nexara.errors import (
    EmptyVideoError,
    InvalidInputError,
    MediaError,
    SourceNotAllowedError,
    SourceUnreachableError,
)
from nexara.media import (
    DecodeStats,
    FpsSampler,
    decode_packets,
    is_live_url,
    open_video_stream,
    source_label,
    url_scheme,
)
from nexara.source_policy import check_source, ffmpeg_options

__all__ = ["Backoff", "LiveFrame", "Pacing", "SourceConfig", "StreamReader", "StreamState"]

logger = logging.getLogger(__name__)

Pacing = Literal["realtime", "fast"]
StreamState = Literal["connecting", "streaming", "backoff", "ended", "failed"]

# A paced source more than this behind its schedule (slow consumer) is re-anchored instead of bursting.
_MAX_PACING_LAG_S = 1.0
# Decoded frames over which input_fps is measured.
_FPS_WINDOW = 32


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")


class SourceConfig(SourceSettings):
    """Where a camera's video comes from and how to keep reading it: the schema's source settings
    (:class:`nexara.config.SourceSettings`, with its rules) plus what the reader takes from elsewhere.

    ``url``: a file path, any URL FFmpeg opens (``rtsp://``, ``http(s)://``, an HLS playlist...) or,
    with ``format``, a device (e.g. ``":0.0"`` with ``format="x11grab"``, ``"/dev/video0"`` with
    ``"v4l2"``). ``pacing``: ``"realtime"`` emits the frames of files (and http/HLS files) at their
    timestamps, ``"fast"`` as fast as they decode (live schemes and devices are never delayed).
    ``loop``: a file starts again at its end, stream time increasing (files only). ``options``:
    FFmpeg demuxer/protocol/device options (e.g. ``{"rtsp_transport": "tcp"}``).
    ``read_timeout_s`` bounds every network open and read. ``reconnect``: None = True for URLs,
    False for files and devices. ``max_reconnects``: reconnects allowed over the reader's life,
    None = forever. ``backoff_*`` / ``jitter``: see :class:`Backoff`.
    """

    read_timeout_s: float = Field(10.0, gt=0, le=600)
    jitter: float = Field(0.5, ge=0, le=1)

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(url=url, **kw)

    @classmethod
    def from_camera(cls, camera: ResolvedCamera) -> SourceConfig:
        """The reader's view of a resolved camera. ``url`` keeps its ``${ENV}`` references (it is shown
        in the camera status: a password from the environment must not be); a missing variable fails
        here, and :attr:`resolved_url` is what is opened."""
        fields = camera.camera.model_dump(include=set(SourceSettings.model_fields))
        expand_env(fields["url"])
        return cls(**fields, read_timeout_s=camera.read_timeout_s)

    @property
    def resolved_url(self) -> str:
        """``url`` with ``${ENV}`` expanded: what FFmpeg opens (never logged unmasked, never in a status)."""
        return expand_env(self.url)

    @property
    def is_url(self) -> bool:
        """Whether ``url`` is a URL with a scheme (``file://`` counts as a local file)."""
        return url_scheme(self.resolved_url) is not None

    @property
    def is_live(self) -> bool:
        """A source that paces itself and should never end: a live-scheme URL or a device."""
        return self.format is not None or is_live_url(self.resolved_url)

    @property
    def should_reconnect(self) -> bool:
        """``reconnect`` resolved: None means True for URLs, False for files and devices."""
        return self.is_url if self.reconnect is None else self.reconnect

    @property
    def paced(self) -> bool:
        """Whether frames are held back to their stream times (realtime pacing of a non-live source)."""
        return self.pacing == "realtime" and not self.is_live

    @property
    def open_options(self) -> dict[str, str]:
        """FFmpeg options of every open: ``options``, plus the protocol and demuxer whitelists of a policed
        source (so FFmpeg opens only what the policy checked: no ``file`` under a URL, no ``tty``)."""
        if self.source_policy is None:
            return dict(self.options)
        return {**self.options, **ffmpeg_options(self.source_policy, self.resolved_url, self.format)}

    def backoff(self, rng: random.Random | None = None) -> Backoff:
        return Backoff(self.backoff_initial_s, self.backoff_max_s, self.jitter, rng=rng)


class Backoff:
    """Exponential reconnect delays: ``min(max_s, initial_s * 2**attempt)`` scaled by a random factor
    in ``[1 - jitter, 1]`` (so cameras that dropped together do not reconnect in lockstep, and no
    delay exceeds ``max_s``). :meth:`reset` after a connection that delivered frames."""

    def __init__(self, initial_s: float, max_s: float, jitter: float, rng: random.Random | None = None) -> None:
        _positive("initial_s", initial_s)
        _positive("max_s", max_s)
        if max_s < initial_s:
            raise InvalidInputError(f"max_s ({max_s}) must be >= initial_s ({initial_s})")
        if not 0 <= jitter <= 1:
            raise InvalidInputError(f"jitter must be a fraction in [0, 1], got {jitter!r}")
        self.initial_s = float(initial_s)
        self.max_s = float(max_s)
        self.jitter = float(jitter)
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Delays handed out since the last :meth:`reset`."""
        return self._attempt

    def base_delay(self) -> float:
        """The un-jittered delay :meth:`next_delay` scales next."""
        return min(self.max_s, self.initial_s * 2.0 ** min(self._attempt, 64))

    def next_delay(self) -> float:
        delay = self.base_delay() * (1.0 - self.jitter * self._rng.random())
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0


@dataclass(slots=True)
class LiveFrame:
    """One emitted frame. ``time_s``: stream time (s), strictly increasing across loops and reconnects;
    ``rgb``: (H, W, 3) uint8 at the source's resolution; ``index``: count of frames emitted before this
    one; ``wall_time``: ``time.monotonic()`` when it was decoded (for paced files: when it became due)."""

    time_s: float
    rgb: np.ndarray
    index: int
    wall_time: float


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            fps = float(rate)
            if fps < 1000:  # RTP clock rates (90 kHz) are not frame rates
                return fps
    return 0.0


@dataclass(slots=True)
class _Connection:
    """Clock of one open of the source."""

    frame_dt: float  # one source frame interval (s), for loops and frames without timestamps
    time_base: float | None
    offset: float | None = None  # stream time of ``origin``; set at the first packet
    origin: int | None = None  # timestamp of the first packet (pts, else dts): stream time ``offset``
    frames: int = 0


class StreamReader:
    """Reads one camera source for a stream actor: see the module docstring.

    ``fps``: emitted frame rate (frames are subsampled, never duplicated). ``on_packet(packet, t)``:
    every non-empty video packet (decode order) with its stream time (the presentation time of its
    frame, on the clock of :attr:`LiveFrame.time_s`), before it is decoded.
    ``on_connect(stream)``: the video stream of every open (first connection, loop restart,
    reconnect); it belongs to the open container, so read what you need (codec parameters, time
    base) in the callback and never keep it: using it after the connection closed crashes the
    process (PyAV does not guard it). Packets may be kept (their data and timestamps outlive the
    connection; set ``packet.stream`` to the output stream before muxing). ``stop``: set it (from
    any thread) to end the iterator; a private event by default (:meth:`stop`). :meth:`frames` can
    be iterated once; :meth:`stats` may be read from another thread.
    """

    def __init__(
        self,
        cfg: SourceConfig,
        *,
        fps: float,
        on_packet: Callable[[av.Packet, float], None] | None = None,
        on_connect: Callable[[av.video.stream.VideoStream], None] | None = None,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(cfg, SourceConfig):
            raise TypeError(f"cfg must be a SourceConfig, got {type(cfg).__name__}")
        _positive("fps", fps)
        self.cfg = cfg
        self.fps = float(fps)
        self.label = source_label(cfg.resolved_url)
        self._on_packet = on_packet
        self._on_connect = on_connect
        self._stop = stop if stop is not None else threading.Event()
        self._backoff = cfg.backoff(rng)
        self._decode = DecodeStats()
        self._sampler = FpsSampler(self.fps)
        self._started = False
        self._state: StreamState = "connecting"
        self._last_error: str | None = None
        self._connects = 0
        self._reconnects = 0
        self._loops = 0
        self._emitted = 0
        self._last_time: float | None = None  # latest stream time of a packet or frame
        self._last_wall: float | None = None  # monotonic time of the latest packet or frame
        self._fps_times: deque[float] = deque(maxlen=_FPS_WINDOW)
        self._pace_anchor: tuple[float, float] | None = None  # (wall, stream time)

    # --- public -------------------------------------------------------------------------------

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    def stop(self) -> None:
        """Ask the iterator to end (it returns at the next packet, or at once from a wait)."""
        self._stop.set()

    @property
    def state(self) -> StreamState:
        return self._state

    def stats(self) -> dict[str, Any]:
        """A snapshot: connects (opens, loop restarts included), reconnects, loops, frames_decoded,
        frames_emitted, corrupt_packets, last_error (str or None), state, input_fps (source frame
        rate measured on the stream clock over the last decoded frames; 0.0 until known)."""
        times = list(self._fps_times)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        return {
            "connects": self._connects,
            "reconnects": self._reconnects,
            "loops": self._loops,
            "frames_decoded": self._decode.decoded_frames,
            "frames_emitted": self._emitted,
            "corrupt_packets": self._decode.corrupt_packets,
            "last_error": self._last_error,
            "state": self._state,
            "input_fps": (len(times) - 1) / span if span > 0 else 0.0,
        }

    def frames(self) -> Iterator[LiveFrame]:
        """The emitted frames, until the source ends, fails for good or ``stop`` is set. Closing the
        iterator (``break`` out of a for loop, ``close()``) closes the source."""
        if self._started:
            raise RuntimeError("StreamReader.frames() can be iterated only once; make a new reader")
        self._started = True
        return self._run()

    # --- internals ----------------------------------------------------------------------------

    def _set_state(self, state: StreamState) -> None:
        if state != self._state:
            logger.debug("%s: %s -> %s", self.label, self._state, state)
            self._state = state

    def _run(self) -> Generator[LiveFrame, None, None]:
        cfg = self.cfg
        reconnect = cfg.should_reconnect
        try:
            while not self._stop.is_set():
                self._set_state("connecting")
                if not self._allowed():
                    return
                try:
                    container, stream = open_video_stream(
                        cfg.resolved_url,
                        timeout_s=cfg.read_timeout_s,
                        options=cfg.open_options,
                        input_format=cfg.format,
                    )
                except MediaError as exc:
                    if not self._retry(exc, reconnect):
                        return
                    continue
                outcome: str | MediaError
                try:
                    outcome = yield from self._connection(container, stream)
                except MediaError as exc:
                    outcome = exc
                except av.error.FFmpegError as exc:
                    outcome = SourceUnreachableError(self.label, f"read failed ({exc})")
                finally:
                    container.close()
                if outcome == "stopped":
                    break
                if outcome == "eof":
                    if reconnect and (cfg.is_url or cfg.is_live):  # a live stream should not end
                        outcome = SourceUnreachableError(self.label, "the stream ended (end of file from the source)")
                    elif cfg.loop:
                        self._loops += 1
                        continue
                    else:
                        logger.info("%s: end of stream after %d emitted frame(s)", self.label, self._emitted)
                        self._set_state("ended")
                        return
                if isinstance(outcome, MediaError) and not self._retry(outcome, reconnect):
                    return
            self._set_state("ended")
        except GeneratorExit:  # closed by the consumer
            if self._state != "failed":
                self._set_state("ended")
            raise
        except BaseException as exc:  # a raised MediaError (no reconnects) or an error of a callback
            if self._state != "failed":
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._set_state("failed")
            raise

    def _allowed(self) -> bool:
        """The source policy's check before a connect (DNS may have changed since the last one); a
        refusal ends the reader as failed, with the generic message (the reason goes to the log)."""
        policy = self.cfg.source_policy
        if policy is None:
            return True
        try:
            check_source(policy, self.cfg.resolved_url, input_format=self.cfg.format, options=self.cfg.options)
        except SourceNotAllowedError as exc:
            logger.error("%s: refused by the source policy: %s", self.label, exc.reason)
            self._last_error = str(exc)
            self._set_state("failed")
            return False
        return True

    def _retry(self, exc: MediaError, reconnect: bool) -> bool:
        """After a failure: raise it (no reconnects), give up (False) or wait the backoff (True)."""
        self._last_error = str(exc)
        if not reconnect:
            self._set_state("failed")
            raise exc
        limit = self.cfg.max_reconnects
        if limit is not None and self._reconnects >= limit:
            logger.error("%s: giving up after %d reconnect(s): %s", self.label, self._reconnects, exc)
            self._set_state("failed")
            return False
        self._reconnects += 1
        delay = self._backoff.next_delay()
        self._set_state("backoff")
        logger.warning(
            "%s: %s; reconnect %d%s in %.2f s",
            self.label,
            exc.reason,
            self._reconnects,
            f"/{limit}" if limit is not None else "",
            delay,
        )
        if self._stop.wait(delay):
            self._set_state("ended")
            return False
        return True

    def _next_offset(self, frame_dt: float) -> float:
        """Stream time of the first packet of a new connection."""
        if self._last_time is None:
            return 0.0
        gap = frame_dt  # a loop restart: the next frame interval
        if self.cfg.is_url or self.cfg.is_live:
            # a reconnect: the time the source was away (at least one frame interval)
            wall = self._last_wall if self._last_wall is not None else time.monotonic()
            gap = max(frame_dt, time.monotonic() - wall)
        return self._last_time + gap

    def _connection(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Generator[LiveFrame, None, str]:
        """Read one open of the source. Returns "eof" or "stopped"; read errors raise."""
        self._connects += 1
        self._set_state("streaming")
        if self._on_connect is not None:
            self._on_connect(stream)
        native = _stream_fps(stream)
        frame_dt = 1.0 / native if native > 0 else 1.0 / self.fps
        # half a source frame of rounding (iter_frames' rule), never more than half an output slot
        self._sampler.tolerance_s = min(0.5 / native, 0.5 / self.fps) if native > 0 else 1e-3
        time_base = float(stream.time_base) if stream.time_base is not None else None
        conn = _Connection(frame_dt=frame_dt, time_base=time_base)
        self._fps_times.clear()
        logger.info(
            "%s: connected (%s, %.2f fps, connection %d)", self.label, stream.codec_context.name, native, self._connects
        )

        def hook(packet: av.Packet) -> None:
            if conn.offset is None:
                conn.offset = self._next_offset(frame_dt)
            # a packet is timed by the frame it carries (presentation time, the clock of LiveFrame)
            ts = packet.pts if packet.pts is not None else packet.dts
            if conn.origin is None and ts is not None:
                conn.origin = int(ts)  # the first packet (a keyframe) is normally the first frame shown
            if ts is not None and conn.origin is not None and conn.time_base is not None:
                t = conn.offset + (int(ts) - conn.origin) * conn.time_base
            else:  # no timestamps: the latest time seen
                t = self._last_time if self._last_time is not None else conn.offset
            self._last_time = t if self._last_time is None else max(self._last_time, t)
            self._last_wall = time.monotonic()
            if self._on_packet is not None:
                self._on_packet(packet, t)

        frames = decode_packets(
            container,
            stream,
            stats=self._decode,
            label=self.label,
            on_packet=hook,
            raise_io_errors=self.cfg.is_url or self.cfg.is_live,
        )
        for frame in frames:
            if self._stop.is_set():
                return "stopped"
            now = time.monotonic()
            offset = conn.offset if conn.offset is not None else self._next_offset(frame_dt)
            conn.offset = offset
            if frame.pts is not None and conn.origin is not None and conn.time_base is not None:
                t = offset + (int(frame.pts) - conn.origin) * conn.time_base
            else:  # no timestamps: one frame interval after the previous frame
                t = offset if conn.frames == 0 else self._fps_times[-1] + frame_dt
            conn.frames += 1
            if conn.frames == 1:
                self._backoff.reset()  # this connection delivers frames
            self._fps_times.append(t)
            self._last_time = t if self._last_time is None else max(self._last_time, t)
            self._last_wall = now
            if not self._sampler.keep(t):
                continue
            if self.cfg.paced and not self._pace(t):
                return "stopped"
            rgb = frame.to_ndarray(format="rgb24")
            live = LiveFrame(time_s=t, rgb=rgb, index=self._emitted, wall_time=time.monotonic())
            self._emitted += 1
            yield live
        if conn.frames == 0:
            if self.cfg.is_url or self.cfg.is_live:
                raise SourceUnreachableError(self.label, "the connection ended before a frame could be decoded")
            raise EmptyVideoError(self.label, "no frame of its video stream could be decoded")
        return "eof"

    def _pace(self, t: float) -> bool:
        """Sleep until stream time ``t`` is due. False when ``stop`` was set while waiting."""
        now = time.monotonic()
        if self._pace_anchor is None:
            self._pace_anchor = (now, t)
            return True
        wall0, t0 = self._pace_anchor
        delay = wall0 + (t - t0) - now
        if delay < -_MAX_PACING_LAG_S:  # the consumer fell behind: do not burst to catch up
            self._pace_anchor = (now, t)
        elif delay > 0:
            return not self._stop.wait(delay)
        return True
