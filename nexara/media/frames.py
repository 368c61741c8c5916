"""Front-to-back decoding of long videos and live streams, optionally subsampled to a frame rate."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from types import TracebackType

from nexara.errors import EmptyVideoError
from nexara.media.container import _open_raw, _video_stream
from nexara.media.decode import _Clock, _configure_decoder, _decoded_frames
from nexara.media.probe import _stream_fps
from nexara.media.resize import _check_policy, _check_size, _frame_to_rgb
from nexara.media.sampling import FpsSampler
from nexara.media.sources import _label
from nexara.media.types import DecodedFrame, DecodeStats, ResizePolicy, Source

__all__ = ["FrameIterator", "iter_frames"]


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
