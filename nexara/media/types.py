"""The records the media layer hands out: probe results, sampled clips, decoded frames, decode
counters, and the source and resize-policy types."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nexara.config.offline import ResizePolicy

__all__ = ["DecodeStats", "DecodedFrame", "ResizePolicy", "SampledClip", "SampledWindows", "Source", "VideoInfo"]

Source = str | Path | bytes


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What :func:`probe` learns about a source's (first) video stream.

    ``frame_count`` comes from the container's metadata, or from counting the video packets when
    the container has none (Matroska/WebM); 0 for live streams, which never end. ``duration_s``
    is 0.0 when unknown (live). ``container`` is FFmpeg's demuxer name (e.g.
    ``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"matroska,webm"``).
    """

    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    frame_count: int
    has_audio: bool
    container: str


@dataclass(frozen=True, slots=True)
class SampledClip:
    """``T`` frames sampled evenly over a video by :func:`sample_clip`.

    ``frames`` is (T, H, W, 3) uint8 RGB; ``indices`` (int64) the presentation-order index of the
    source frame each row is (equal to :func:`sample_indices` unless frames were lost to
    corruption, when a missing frame is replaced by the nearest decoded one); ``times_s``
    (float64) their timestamps in seconds since the stream start. ``decoded_frames`` counts every
    frame the decoder produced, ``corrupt_packets`` the packets it rejected (and demuxer errors).
    """

    frames: np.ndarray
    indices: np.ndarray
    times_s: np.ndarray
    info: VideoInfo
    decoded_frames: int
    corrupt_packets: int


@dataclass(frozen=True, slots=True)
class SampledWindows:
    """``W`` windows of ``T`` frames each, sampled by :func:`sample_windows`.

    ``frames`` is (W, T, H, W, 3) uint8 RGB; ``indices`` and ``times_s`` (W, T) as in
    :class:`SampledClip`; ``start_s`` / ``end_s`` (W,) the span each window covers, seconds since the
    stream start (from frame positions and the stream's frame rate).
    """

    frames: np.ndarray
    indices: np.ndarray
    times_s: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    info: VideoInfo
    decoded_frames: int
    corrupt_packets: int


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One frame from :func:`iter_frames`: RGB uint8 (H, W, 3), its index among decoded frames
    (0-based, presentation order) and its time in seconds since the stream start."""

    rgb: np.ndarray
    index: int
    time_s: float


@dataclass(slots=True)
class DecodeStats:
    """Counters a running decode updates in place (deliberately mutable, unlike the results).

    ``packets``: non-empty video packets demuxed; ``decoded_frames``: frames out of the decoder;
    ``corrupt_packets``: packets the decoder rejected plus demuxer errors; ``yielded_frames``:
    frames handed to the caller.
    """

    packets: int = 0
    decoded_frames: int = 0
    corrupt_packets: int = 0
    yielded_frames: int = 0
