"""One error hierarchy: every error class carries a stable code, one table maps codes to HTTP statuses,
and the coded errors survive the trip across Ray actors (pickling)."""

from __future__ import annotations

import pickle

import pytest

from nexara import errors
from nexara.errors import (
    HTTP_STATUS,
    ApiError,
    CameraError,
    InvalidInputError,
    NexaraError,
    http_status,
)


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def test_every_error_class_of_the_module_declares_its_own_code() -> None:
    classes = [
        c for c in _subclasses(NexaraError) if c.__module__ == errors.__name__ and not c.__name__.startswith("_")
    ]
    assert {"CameraError", "ApiError", "InvalidInputError", "MediaError", "ConfigError"} <= {
        c.__name__ for c in classes
    }
    for cls in classes:
        assert "code" in vars(cls), f"{cls.__name__} inherits its code"
    codes = [vars(c)["code"] for c in classes]
    assert len(codes) == len(set(codes)), "two classes share a code"


@pytest.mark.parametrize(
    ("code", "status"),
    [  # the statuses the ingress gave before the table (tests/e2e/test_live.py asserts some of them)
        ("unauthorized", 401),
        ("bad_content_length", 400),
        ("empty_upload", 400),
        ("invalid_json", 400),
        ("upload_too_large", 413),
        ("invalid_request", 422),
        ("invalid_camera", 422),
        ("not_a_video", 415),
        ("no_video_stream", 415),
        ("unsupported_codec", 415),
        ("empty_video", 422),
        ("truncated_video", 422),
        ("camera_not_found", 404),
        ("camera_exists", 409),
        ("source_not_found", 422),
        ("no_capacity", 503),
        ("camera_restarting", 503),
        ("camera_failed", 400),
        ("camera_error", 400),
        ("event_not_found", 404),
        ("no_clip", 404),
        ("clip_not_ready", 409),
    ],
)
def test_http_status_by_code(code: str, status: int) -> None:
    assert http_status(code) == status


def test_unlisted_codes_are_unprocessable_input() -> None:
    assert http_status("bad_model") == 422
    assert http_status(InvalidInputError.code) == 422
    assert all(400 <= s < 600 for s in HTTP_STATUS.values())


@pytest.mark.parametrize("cls", [CameraError, ApiError])
def test_coded_errors_pickle_with_code_and_message(cls: type[CameraError] | type[ApiError]) -> None:
    err = pickle.loads(pickle.dumps(cls("no_capacity", "camera cam: full")))
    assert isinstance(err, cls) and isinstance(err, NexaraError)
    assert (err.code, err.message, str(err)) == ("no_capacity", "camera cam: full", "camera cam: full")


def test_invalid_input_is_still_a_value_error() -> None:
    """Callers (and tests) that caught the bare ValueError the live path raised keep working."""
    with pytest.raises(ValueError, match="frame"):
        raise InvalidInputError("expected an RGB frame")
    assert pickle.loads(pickle.dumps(InvalidInputError("x"))).code == "invalid_input"


def test_a_dead_stream_actor_reads_as_a_restarting_camera() -> None:
    """While the camera manager restarts a killed stream actor, a status call reaching the dead one answers
    503 camera_restarting (the soak saw errors for 1-5 s), not a generic camera_error."""
    from ray.exceptions import ActorDiedError, RayTaskError

    from serve.ingress import _camera_error

    wrapped = RayTaskError("status", "traceback", ActorDiedError())
    err = _camera_error(wrapped)
    assert (err.code, http_status(err.code)) == ("camera_restarting", 503)
    assert _camera_error(RuntimeError("boom")).code == "camera_error"

