"""Evidence clips of monitor-wall cells: the cell cropped out of the wall's remuxed clip and re-encoded as
H.264 in MP4 with ``+faststart`` (the index first, so a browser starts playing before the whole file
arrives). The remux keeps the camera's own packets (cheap, bit-exact) but shows the whole wall; the cell
clip is what an operator reviews and what ``nexara dataset from-reviews`` trains on.

:func:`encode_cell_clip` does one clip (decode, crop, encode; temp file, fsync, ``os.replace``).
:class:`CellClipEncoder` runs them on one background thread, so a few seconds of encoding never stall
the stream reader that triggered the clip. Pure logic plus file I/O: no Ray.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.video.stream
import numpy as np

from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["CellClipEncoder", "CropBox", "encode_cell_clip"]

#: (x0, y0, x1, y1) in pixels of the decoded wall frame, x1/y1 exclusive
CropBox = tuple[int, int, int, int]
ENCODER = "libx264"
#: veryfast on one thread (the encode shares the CPUs with live scoring); crf 23 is x264's default
_ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23", "threads": "1"}


def check_box(box: object) -> CropBox:
    """``box`` as a valid crop box, or an :class:`InvalidInputError` naming the problem."""
    if (
        not isinstance(box, (tuple, list))
        or len(box) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)
    ):
        raise InvalidInputError(f"crop box must be four integers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0 or x1 - x0 < 2 or y1 - y0 < 2:
        raise InvalidInputError(f"crop box {tuple(box)} needs x0, y0 >= 0 and at least 2x2 pixels")
    return (x0, y0, x1, y1)


def encode_cell_clip(src: str | os.PathLike[str], dst: str | os.PathLike[str], box: CropBox) -> tuple[int, int]:
    """Decode ``src``, crop every frame to ``box`` and write H.264/MP4 (faststart) to ``dst`` atomically.
    yuv420p needs even sizes, so an odd width or height loses its last column or row. Returns the
    (width, height) written."""
    x0, y0, x1, y1 = check_box(box)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with av.open(str(src)) as inp:
            ins = inp.streams.video[0]
            wall_w, wall_h = ins.codec_context.width, ins.codec_context.height
            if x1 > wall_w or y1 > wall_h:
                raise InvalidInputError(f"crop box {box} lies outside the {wall_w}x{wall_h} frame of {src}")
            w, h = (x1 - x0) & ~1, (y1 - y0) & ~1
            time_base = ins.time_base or Fraction(1, 90_000)
            rate = ins.average_rate or ins.guessed_rate or Fraction(25)
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                try:
                    enc: av.video.stream.VideoStream = out.add_stream(ENCODER, rate=rate)  # type: ignore[assignment]
                except (av.FFmpegError, ValueError) as exc:
                    raise InvalidInputError(f"this PyAV build has no {ENCODER} encoder: {exc}") from None
                enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
                enc.time_base = time_base
                enc.options = dict(_ENCODER_OPTIONS)
                last_pts: int | None = None
                for frame in inp.decode(ins):
                    if frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
                        continue  # the encoder needs strictly increasing timestamps
                    rgb = frame.to_ndarray(format="rgb24")[y0 : y0 + h, x0 : x0 + w]
                    cell = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
                    cell.pts, cell.time_base = frame.pts, time_base
                    last_pts = frame.pts
                    for packet in enc.encode(cell):
                        out.mux(packet)
                if last_pts is None:
                    raise InvalidInputError(f"{src}: no frames to encode")
                for packet in enc.encode():
                    out.mux(packet)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return w, h


@dataclass(frozen=True, slots=True)
class _Job:
    src: Path
    dst: Path
    box: CropBox
    done: Callable[[str | None], None]  # called with None on success, else the reason it failed


class CellClipEncoder:
    """One background thread encoding cell clips in request order; :meth:`wait_idle` blocks until every
    submitted clip is done (stream end), :meth:`close` also ends the thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, src: Path, dst: Path, box: CropBox, done: Callable[[str | None], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cell-clip-encoder", daemon=True)
                self._thread.start()
        self._jobs.put(_Job(src, dst, check_box(box), done))

    def wait_idle(self) -> None:
        self._jobs.join()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                try:
                    w, h = encode_cell_clip(job.src, job.dst, job.box)
                except (av.FFmpegError, InvalidInputError, OSError) as exc:
                    reason: str | None = f"{type(exc).__name__}: {exc}"
                else:
                    logger.info("cell clip %s written (%dx%d from %s)", job.dst, w, h, job.src.name)
                    reason = None
                try:
                    job.done(reason)
                except Exception as exc:  # a broken callback must not end the encoder thread
                    logger.error("cell clip %s: completion callback failed: %s", job.dst, exc)
            finally:
                self._jobs.task_done()
