"""Fixed-length clips sampled evenly over a whole finite video, or over each of its windows: one
demux-only counting pass, then one sequential decode that keeps only the target frames."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import av
import numpy as np

from nexara.errors import EmptyVideoError, MediaError, TruncatedVideoError
from nexara.media.container import _video_stream, open_container
from nexara.media.decode import _Clock, _configure_decoder, _decoded_frames
from nexara.media.demux import _PacketScan, _rewind, _scan_packets
from nexara.media.probe import _make_info
from nexara.media.resize import _check_policy, _check_size, _frame_to_rgb
from nexara.media.sampling import sample_indices, window_indices
from nexara.media.sources import _is_live, _label, _url_scheme
from nexara.media.types import DecodeStats, ResizePolicy, SampledClip, SampledWindows, Source, VideoInfo

__all__ = ["sample_clip", "sample_windows"]

logger = logging.getLogger(__name__)


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
    return _sample(
        source,
        lambda info: sample_indices(info.frame_count, num_frames),
        size_hw=size_hw,
        resize=resize,
        timeout_s=timeout_s,
        allow_truncated=allow_truncated,
        threads=threads,
    )


def sample_windows(
    source: Source,
    *,
    window_s: float,
    hop_s: float,
    num_frames: int,
    size_hw: tuple[int, int] | None = (224, 224),
    resize: ResizePolicy = "squash",
    timeout_s: float = 10.0,
    allow_truncated: bool = False,
    threads: int = 0,
) -> SampledWindows:
    """Cut a finite video into windows of ``window_s`` seconds every ``hop_s`` seconds and sample
    ``num_frames`` frames evenly over each (:func:`window_indices`: a video shorter than one window is
    one window over all of it), in the one sequential decode of :func:`sample_clip` (whose other
    arguments mean the same here)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")

    def targets(info: VideoInfo) -> np.ndarray:
        idx, _ = window_indices(info.frame_count, info.fps, window_s=window_s, hop_s=hop_s, num_frames=num_frames)
        return idx.reshape(-1)

    clip = _sample(
        source,
        targets,
        size_hw=size_hw,
        resize=resize,
        timeout_s=timeout_s,
        allow_truncated=allow_truncated,
        threads=threads,
    )
    info = clip.info
    _, bounds = window_indices(info.frame_count, info.fps, window_s=window_s, hop_s=hop_s, num_frames=num_frames)
    w = len(bounds)
    times = clip.times_s.reshape(w, num_frames)
    if info.fps > 0:
        start_s, end_s = bounds[:, 0] / info.fps, bounds[:, 1] / info.fps
    else:  # no frame rate: the windows' own first and last frame times
        start_s, end_s = times[:, 0], times[:, -1]
    return SampledWindows(
        frames=clip.frames.reshape(w, num_frames, *clip.frames.shape[1:]),
        indices=clip.indices.reshape(w, num_frames),
        times_s=times,
        start_s=np.asarray(start_s, np.float64),
        end_s=np.asarray(end_s, np.float64),
        info=info,
        decoded_frames=clip.decoded_frames,
        corrupt_packets=clip.corrupt_packets,
    )


def _sample(
    source: Source,
    targets_for: Callable[[VideoInfo], np.ndarray],
    *,
    size_hw: tuple[int, int] | None,
    resize: ResizePolicy,
    timeout_s: float,
    allow_truncated: bool,
    threads: int,
) -> SampledClip:
    """The frames at ``targets_for(info)`` (presentation-order indices, any order, repeats allowed) in one
    sequential decode; see :func:`sample_clip`."""
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
            targets=targets_for(info),
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
