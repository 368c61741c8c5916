"""Typed errors: the one hierarchy of the project.

Every error the user can trigger derives from :class:`NexaraError`, carries a stable ``code`` and a
message that names the problem, so the CLI and the HTTP layer can print it without a traceback.
:data:`HTTP_STATUS` is the one table from code to HTTP status; the ingress reads it, nothing else
decides a status.
"""

from __future__ import annotations


class NexaraError(Exception):
    """Base class for every error the project raises on purpose."""

    code = "error"


class ConfigError(NexaraError):
    code = "bad_config"


class ManifestError(NexaraError):
    """A dataset folder, CSV or Parquet manifest that cannot be used."""

    code = "bad_manifest"


# --- bad input on the live path ------------------------------------------------------------------


class InvalidInputError(NexaraError, ValueError):
    """A value handed to the live path that it cannot use (a frame of the wrong shape, a probability
    outside [0, 1], a grid that does not fit the frame). Also a :class:`ValueError`, so callers that
    caught the bare ``ValueError`` raised before keep working."""

    code = "invalid_input"


class _CodedError(NexaraError):
    """An error whose code is chosen per instance from a closed set (every one listed in
    :data:`HTTP_STATUS`). Code and message both live in ``args``: the error pickles across Ray actors."""

    code = "error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class CameraError(_CodedError):
    """A camera request that cannot be done (unknown id, duplicate id, bad config, no capacity)."""

    code = "camera_error"


class ApiError(_CodedError):
    """A bad HTTP request (missing token, oversized or empty upload, unknown event...)."""

    code = "bad_request"


class RateLimitedError(ApiError):
    """Too many POST requests with one token (``serve.rate_limit``); ``retry_after_s`` says when to retry."""

    code = "rate_limited"

    def __init__(self, retry_after_s: float, message: str) -> None:
        super().__init__(RateLimitedError.code, message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type, tuple[float, str]]:
        return (type(self), (self.retry_after_s, self.message))


class SourceNotAllowedError(NexaraError):
    """A camera source the server's source policy refuses (:mod:`nexara.source_policy`). The message is
    the same for every reason, so a caller cannot probe which files exist or what an address serves;
    ``reason`` says why, for the server's own log only."""

    code = "source_not_allowed"
    public_message = "this source is not allowed by the server's source policy (serve.source_policy)"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.public_message


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


class InvalidSpecError(ModelError, ValueError):
    """A preprocessing spec (usually read from a manifest) has a missing, extra or bad field."""

    code = "bad_preprocess_spec"


class InvalidFramesError(ModelError, ValueError):
    """Frames handed to a backbone are not uint8 (N, H, W, 3)."""

    code = "bad_frames"


class IncompatibleWeightsError(ModelError):
    """A checkpoint whose keys or shapes do not fit the backbone's architecture."""

    code = "incompatible_weights"


class UnsafeCheckpointError(ModelError):
    """A checkpoint pickle asked for something other than plain numpy arrays."""

    code = "unsafe_checkpoint"


# --- training ------------------------------------------------------------------------------------


class TrainingError(NexaraError):
    code = "training_failed"


class ExportError(NexaraError):
    code = "export_failed"


# --- HTTP ----------------------------------------------------------------------------------------

HTTP_STATUS: dict[str, int] = {
    # request shape and authentication
    "unauthorized": 401,
    "bad_request": 400,
    "bad_content_length": 400,
    "empty_upload": 400,
    "invalid_json": 400,
    "upload_too_large": 413,
    "invalid_request": 422,
    "invalid_input": 422,
    # media: not a video we can decode at all is an unsupported media type; a broken video is 422
    "not_a_video": 415,
    "no_video_stream": 415,
    "unsupported_codec": 415,
    # cameras
    "camera_error": 400,
    "camera_failed": 400,
    "invalid_camera": 422,
    "source_not_found": 422,
    # one status for every refused source (422 like the other unusable camera sources: it says nothing more)
    "source_not_allowed": 422,
    "rate_limited": 429,
    "camera_not_found": 404,
    "camera_exists": 409,
    "no_capacity": 503,
    "camera_restarting": 503,
    # the server could not keep an API camera in its run folder (cameras.json): not the caller's doing
    "camera_not_saved": 503,
    # events and clips
    "event_not_found": 404,
    "no_clip": 404,
    "clip_not_ready": 409,
    # routing (Starlette's own errors)
    "not_found": 404,
    "method_not_allowed": 405,
    # console sign-in, roles and reviews
    "forbidden": 403,
    "csrf_failed": 403,
    "invalid_review": 422,
}
"""HTTP status by error code. A code not listed is input the caller sent that could not be used: 422."""

DEFAULT_HTTP_STATUS = 422


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, DEFAULT_HTTP_STATUS)
