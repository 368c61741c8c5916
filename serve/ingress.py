"""HTTP ingress (FastAPI on Serve): predict uploads, manage cameras, read events and clips, model info.

Every route but ``/healthz`` needs ``Authorization: Bearer <token>`` where the token comes from the
environment variable named by ``serve.token_env``. Errors are JSON ``{"error": {"code", "message"}}``;
bad input gets a 4xx, never a 500. POST routes are rate limited per token (``serve.rate_limit``: 429
with Retry-After); a camera's source must pass ``serve.source_policy`` (:mod:`nexara.source_policy`),
and every refused source gets the same answer (see SECURITY.md).
"""

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.camera_store import checked_source
from actors.event_log import MAX_READ_LIMIT
from nexara.errors import (
    ApiError,
    CameraError,
    MediaError,
    NexaraError,
    RateLimitedError,
    SourceNotAllowedError,
    http_status,
)
from nexara.media import source_label
from serve.api_schema import CAMERA_BODY, ERROR_RESPONSES, UPLOAD_BODY
from serve.console import ConsoleRoutes, console_router
from serve.rate_limit import RateLimiter

logger = logging.getLogger("ray.serve")

api = FastAPI(title="NexaraVision", version="1", docs_url=None, redoc_url=None, responses=ERROR_RESPONSES)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


@api.exception_handler(NexaraError)
async def _nexara_error(_: Request, exc: NexaraError) -> JSONResponse:
    status = http_status(exc.code)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": RateLimiter.retry_after_header(exc.retry_after_s)}
    message = exc.reason if isinstance(exc, MediaError) else str(exc)
    return _error(status, exc.code, message, headers)


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, str(exc.detail))


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _error(http_status("invalid_request"), "invalid_request", f"{where}: {first.get('msg')}")


def token_digest(token: str) -> str:
    """SHA-256 (hex) of an API token: what the ingress compares a presented token with."""
    return hashlib.sha256(token.encode()).hexdigest()


def _camera_error(exc: Exception) -> NexaraError:
    """The camera manager's own error, out of Ray's wrapper; a stream actor that died (its camera is being
    restarted by the manager) as ``camera_restarting`` (503); anything else as ``camera_error``."""
    from ray.exceptions import RayActorError

    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, NexaraError):
        return cause
    if isinstance(cause, RayActorError):
        return CameraError("camera_restarting", "the camera's stream actor died and is being restarted; retry shortly")
    return CameraError("camera_error", str(cause))


api.include_router(console_router)  # before @serve.ingress, which binds the class's routes


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress(ConsoleRoutes):
    """Routes; holds no state of its own (cameras live in the camera manager, events in the log)."""

    def __init__(
        self,
        backbone: Any,
        ensemble: Any,
        settings: dict[str, Any],
        run_dir: str,
        app_name: str,
        token_sha256: str | None = None,
    ) -> None:
        from actors.stream_actor import get_or_create_manager
        from nexara.clip_decode import ClipDecoder
        from nexara.config import NexaraConfig
        from nexara.model_manifest import read_manifest
        from nexara.voting import DEFAULT_MODEL_DIR

        self.cfg = NexaraConfig.model_validate(settings)
        # the token's SHA-256 only: from the builder (the token itself never travels through Ray), or from
        # this replica's environment (a cluster that sets the variable on its nodes)
        token = os.environ.get(self.cfg.serve.token_env, "")
        if len(token) >= 16:
            token_sha256 = token_digest(token)
        if token_sha256 is None:
            raise RuntimeError(
                f"set {self.cfg.serve.token_env} to an API token of at least 16 characters before starting the app"
            )
        self._token_sha256 = bytes.fromhex(token_sha256)
        self.backbone = backbone
        self.ensemble = ensemble
        self.manifest = read_manifest(self.cfg.serve.model_dir or DEFAULT_MODEL_DIR)
        self.decoder = ClipDecoder(self.manifest)  # uploads decoded as the model reads them; no torch here
        self.max_upload = int(self.cfg.serve.max_upload_mb * 1024 * 1024)
        self.max_json = int(self.cfg.serve.max_json_kb * 1024)
        self.limiter = RateLimiter(self.cfg.serve.rate_limit.per_minute, self.cfg.serve.rate_limit.burst)
        self.manager = get_or_create_manager(settings, run_dir, app_name)
        self._info: dict[str, Any] | None = None

    # --- helpers ---------------------------------------------------------------------------------

    def _auth(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError("unauthorized", "missing bearer token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(bytes.fromhex(token_digest(token.strip())), self._token_sha256):
            raise ApiError("unauthorized", "invalid bearer token")
        if request.method == "POST":
            wait_s = self.limiter.acquire(token.strip())
            if wait_s > 0:
                raise RateLimitedError(wait_s, f"too many requests with this token; retry in {wait_s:.1f} s")

    async def _check_source(self, camera: dict[str, Any]) -> dict[str, Any]:
        """The camera with ``source_policy`` set to the server's (the stream reader checks it again at
        every connect); a source the policy refuses raises one generic error, its reason only logged."""
        policy = self.cfg.serve.source_policy
        try:  # the check the camera manager repeats when it restores a kept camera (actors.camera_store)
            return await asyncio.get_running_loop().run_in_executor(None, checked_source, policy, camera)
        except SourceNotAllowedError as exc:
            url = str(camera.get("url"))
            logger.warning("camera %r refused (%s): %s", camera.get("id"), source_label(url), exc.reason)
            raise ApiError(
                "source_not_allowed", f"camera {camera.get('id')}: {SourceNotAllowedError.public_message}"
            ) from None

    async def _manager_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = await self.manager.info.remote()
        return self._info

    async def _read_body(self, request: Request, limit: int) -> bytes:
        """The request body, refused (413) past ``limit`` bytes before it is all read."""
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise ApiError("bad_content_length", f"Content-Length is not a number: {length!r}") from None
            if declared > limit:
                raise ApiError("upload_too_large", f"upload is {declared} bytes; the limit is {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError("upload_too_large", f"upload exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_upload(self, request: Request) -> bytes:
        body = await self._read_body(request, self.max_upload)
        if not body:
            raise ApiError("empty_upload", "the request body is empty: send the video bytes as the body")
        return body

    # --- routes ------------------------------------------------------------------------------------

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model_version": self.manifest.version}

    @api.post("/v1/predict", openapi_extra=UPLOAD_BODY)
    async def predict(self, request: Request) -> dict[str, Any]:
        from nexara.predict import clip_record

        self._auth(request)
        t0 = time.perf_counter()
        body = await self._read_upload(request)
        name = request.headers.get("x-filename") or request.query_params.get("name") or "<upload>"
        # a MediaError or any other NexaraError of the upload reaches the handler: status from its code
        decoded = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.decoder.decode(body, timeout_s=self.cfg.media.read_timeout_s)
        )
        feats = None  # the embedding deployment (Backbone: frames, ClipBackbone: one window a request)
        if decoded.frames is not None:
            feats = np.asarray(await self.backbone.remote(decoded.frames))[None]
        elif decoded.windows is not None:
            feats = np.stack(await asyncio.gather(*(self.backbone.remote(w) for w in decoded.windows)))
        verdict = await self.ensemble.score_clip.remote(feats, decoded.motion)
        return clip_record(
            name,
            verdict,
            frames_used=decoded.frames_used,
            duration_s=decoded.duration_s,
            latency_s=time.perf_counter() - t0,
        )

    @api.get("/v1/cameras")
    async def list_cameras(self, request: Request) -> dict[str, Any]:
        self._auth(request)
        return {"cameras": [st.to_dict() for st in await self.manager.cameras.remote()]}

    @api.post("/v1/cameras", status_code=201, openapi_extra=CAMERA_BODY)
    async def add_camera(self, request: Request) -> dict[str, Any]:
        self._auth(request)
        try:
            camera = json.loads(await self._read_body(request, self.max_json))
        except ValueError:  # JSON and UTF-8 errors; an empty body too
            raise ApiError("invalid_json", "the body must be a JSON camera object") from None
        if not isinstance(camera, dict):
            raise ApiError("invalid_camera", "the body must be a JSON object with at least id and url")
        camera = await self._check_source(camera)
        try:
            # kept in the run folder: the camera starts again when the app restarts on it
            return (await self.manager.add.remote(camera, persist=True)).to_dict()
        except Exception as exc:
            raise _camera_error(exc) from None

    @api.get("/v1/cameras/{camera_id}")
    async def camera_status(self, camera_id: str, request: Request) -> dict[str, Any]:
        self._auth(request)
        try:
            return (await self.manager.status.remote(camera_id)).to_dict()
        except Exception as exc:
            raise _camera_error(exc) from None

    @api.delete("/v1/cameras/{camera_id}")
    async def remove_camera(self, camera_id: str, request: Request) -> dict[str, Any]:
        self._auth(request)
        try:
            return (await self.manager.remove.remote(camera_id)).to_dict()
        except Exception as exc:
            raise _camera_error(exc) from None

    @api.get("/v1/events")
    async def events(
        self,
        request: Request,
        camera_id: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
        since_unix: float | None = None,
        until_unix: float | None = None,
        # examples given: without them the replica's schema says "example": {} (FastAPI's "unset" marker is
        # compared by identity, and the copy Ray unpickles in the replica is another object)
        offset: int = Query(0, ge=0, openapi_examples={"first page": {"value": 0}}),
        limit: int = Query(100, ge=1, le=MAX_READ_LIMIT, openapi_examples={"default": {"value": 100}}),
    ) -> dict[str, Any]:
        """Events in log order. ``since_s``/``until_s`` filter on stream seconds (``at_s``),
        ``since_unix``/``until_unix`` on the wall-clock time the event was logged."""
        from actors.event_log import EventLog

        self._auth(request)
        info = await self._manager_info()
        path = Path(info["event_log"])
        if not path.exists():
            return {"events": [], "offset": offset, "next_offset": None}

        by_clock = since_unix is not None or until_unix is not None

        def read() -> list[dict[str, Any]]:
            log = EventLog(path)
            try:
                if not by_clock:  # the log reader paginates; one more row (a second read past a full
                    # page: the reader's limit is the route's maximum) tells whether a next page exists
                    rows = log.read(camera_id=camera_id, since_s=since_s, until_s=until_s, offset=offset, limit=limit)
                    if len(rows) == limit:
                        rows += log.read(
                            camera_id=camera_id, since_s=since_s, until_s=until_s, offset=offset + limit, limit=1
                        )
                    return [r.model_dump(mode="json") for r in rows]
                out = []
                for r in log.read(camera_id=camera_id, since_s=since_s, until_s=until_s, limit=MAX_READ_LIMIT):
                    t = r.logged_unix_s
                    if since_unix is not None and (t is None or t < since_unix):
                        continue
                    if until_unix is not None and (t is None or t >= until_unix):
                        continue
                    out.append(r.model_dump(mode="json"))
                return out[offset : offset + limit + 1]
            finally:
                log.close()

        rows = await asyncio.get_running_loop().run_in_executor(None, read)
        nxt = offset + limit if len(rows) > limit else None
        return {"events": rows[:limit], "offset": offset, "next_offset": nxt}

    @api.get("/v1/events/{event_id}/clip", response_model=None)
    async def event_clip(self, event_id: str, request: Request) -> FileResponse | JSONResponse:
        from actors.event_log import EventLog

        self._auth(request)
        info = await self._manager_info()
        path = Path(info["event_log"])
        clip: str | None = None
        found = False
        if path.exists():
            log = EventLog(path)
            try:
                for r in log.read(limit=10_000):
                    if r.event_id == event_id:
                        found = True
                        clip = r.clip_path or clip
            finally:
                log.close()
        if not found:
            raise ApiError("event_not_found", f"no event {event_id}")
        if clip is None:
            raise ApiError("no_clip", f"event {event_id} has no evidence clip (clips are off)")
        if not Path(clip).is_file():
            for alt in (Path(clip).with_suffix(".mkv"),):
                if alt.is_file():
                    clip = str(alt)
                    break
            else:
                raise ApiError("clip_not_ready", f"the evidence clip of {event_id} is still being recorded")
        media = "video/mp4" if clip.endswith(".mp4") else "video/x-matroska"
        return FileResponse(clip, media_type=media, filename=Path(clip).name)

    @api.get("/v1/model")
    async def model(self, request: Request) -> dict[str, Any]:
        self._auth(request)
        return await self.ensemble.info.remote()
