"""What the OpenAPI schema says beyond the route signatures: the one error shape and the request bodies
the routes read themselves (raw, so a size limit applies before parsing). The schema is what clients and
the HTTP fuzz test (tests/e2e/test_fuzz_http.py) go by, so it must say what the app does."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable error code; nexara.errors.HTTP_STATUS gives its HTTP status.")
    message: str = Field(description="What was wrong, for a person to read.")


class ErrorBody(BaseModel):
    """Every error of the API: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "The request could not be used (the code says why)."},
    503: {
        "model": ErrorBody,
        "description": "Not now: no capacity for another camera (no_capacity), a camera restarting "
        "(camera_restarting), or a camera's config not saved in the run folder (camera_not_saved).",
    },
}
"""Responses of every route (FastAPI's own 422 shape, ``{"detail": [...]}``, is never sent)."""


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a JSON object body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


CAMERA_BODY = json_body(
    {
        "type": "object",
        "description": "A camera (the fields of a config file's camera); url must pass serve.source_policy.",
        "required": ["id", "url"],
        "properties": {"id": {"type": "string"}, "url": {"type": "string"}},
        "additionalProperties": True,
    }
)
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The video file's bytes (limit serve.max_upload_mb).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
LOGIN_BODY = json_body(
    {
        "type": "object",
        "required": ["name", "password"],
        "properties": {"name": {"type": "string"}, "password": {"type": "string"}},
    }
)
REVIEW_BODY = json_body(
    {
        "type": "object",
        "required": ["verdict"],
        "properties": {
            "verdict": {"type": "string", "enum": ["confirmed", "dismissed"]},
            "note": {"type": ["string", "null"]},
        },
    }
)
