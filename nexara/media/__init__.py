"""Video input on PyAV: open and probe sources, sample fixed-length clips, iterate frames.

Sources are local paths, URLs (``http(s)://``, ``rtsp://``, ``rtmp://``, HLS playlists...) or raw
bytes. Every failure a user can cause is raised as one of the typed errors of
:mod:`nexara.errors`, with a message that names the input (passwords in URLs are masked):

==============================  ==============================================================
:class:`SourceUnreachableError` missing path, permission denied, URL refused / not found /
                                timed out (``timeout_s`` bounds every network open and read)
:class:`NotAVideoError`         not a media container (text, random bytes, a still image)
:class:`TruncatedVideoError`    MP4/MOV cut short (index missing, or the data ends before the
                                frames the index lists)
:class:`NoVideoStreamError`     a valid container without a video stream (audio-only)
:class:`UnsupportedCodecError`  the video codec has no decoder in this FFmpeg build
:class:`EmptyVideoError`        a video stream that yields no decodable frame
==============================  ==============================================================

Decoding is always demux + decode packet by packet: a packet the decoder rejects is counted as
corrupt and skipped instead of ending the video (PyAV's plain ``container.decode()`` stops at the
first one). Frames are converted to RGB (and resized, by swscale in the same call) only when they
are kept, and at most the kept frames plus one are held in memory.

Frame indices are positions in presentation order (the order the decoder outputs frames).
Timestamps are seconds since the start of the video stream.
"""

from nexara.media.clips import sample_clip, sample_windows
from nexara.media.container import open_container, open_video_stream
from nexara.media.decode import decode_packets
from nexara.media.frames import FrameIterator, iter_frames
from nexara.media.probe import probe
from nexara.media.resize import resize_frame
from nexara.media.sampling import FpsSampler, sample_indices, window_indices
from nexara.media.sources import is_live_url, source_label, url_scheme
from nexara.media.types import (
    DecodedFrame,
    DecodeStats,
    ResizePolicy,
    SampledClip,
    SampledWindows,
    Source,
    VideoInfo,
)

__all__ = [
    "DecodeStats",
    "DecodedFrame",
    "FpsSampler",
    "FrameIterator",
    "ResizePolicy",
    "SampledClip",
    "SampledWindows",
    "Source",
    "VideoInfo",
    "decode_packets",
    "is_live_url",
    "iter_frames",
    "open_container",
    "open_video_stream",
    "probe",
    "resize_frame",
    "sample_clip",
    "sample_indices",
    "sample_windows",
    "source_label",
    "url_scheme",
    "window_indices",
]
