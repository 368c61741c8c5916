"""Typed errors. Every error the user can trigger derives from :class:`NexaraError` and carries a
message that names the problem, so the CLI and the HTTP layer can print it without a traceback."""

from __future__ import annotations


class NexaraError(Exception):
    """Base class for every error the project raises on purpose."""

    code = "error"


class ConfigError(NexaraError):
    code = "bad_config"


# --- media -------------------------------------------------------------------------------------


class MediaError(NexaraError):
    """A video source could not be read. ``source`` names it."""

    code = "bad_media"

    def __init__(self, source: object, reason: str) -> None:
        self.source = str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>"
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class NotAVideoError(MediaError):
    """The input is not a media container at all (text, an image format FFmpeg cannot demux...)."""

    code = "not_a_video"


class NoVideoStreamError(MediaError):
    """A valid container without a video stream (audio-only files)."""

    code = "no_video_stream"


class EmptyVideoError(MediaError):
    """A video stream that yields no decodable frame."""

    code = "empty_video"


class TruncatedVideoError(MediaError):
    """The file ends early: a container index (e.g. the MP4 moov atom) or the data is missing."""

    code = "truncated_video"


class UnsupportedCodecError(MediaError):
    """The video stream's codec has no decoder in this FFmpeg build."""

    code = "unsupported_codec"


class SourceUnreachableError(MediaError):
    """A path that does not exist, or a URL that cannot be opened or timed out."""

    code = "source_unreachable"


# --- models ------------------------------------------------------------------------------------


class ModelError(NexaraError):
    code = "bad_model"


class UnknownModelError(ModelError):
    code = "unknown_model"


class WeightsNotFoundError(ModelError):
    code = "weights_not_found"
