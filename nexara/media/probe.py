"""Metadata of a source's video stream without decoding it."""

from __future__ import annotations

import av

from nexara.media.container import _video_stream, open_container
from nexara.media.demux import _scan_packets
from nexara.media.sources import _is_live, _label
from nexara.media.types import Source, VideoInfo

__all__ = ["probe"]


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
