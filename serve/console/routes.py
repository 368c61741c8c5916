"""Console routes, a mixin of the Serve ingress (so they run in the same replica, with its camera
manager, bearer check and source policy): the page at ``/ui/``, its session API under ``/ui/api/``,
and ``POST /v1/events/{id}/review`` (bearer token, or a session of an operator or admin with its CSRF
token)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from nexara.errors import ApiError, InvalidInputError, RateLimitedError
from nexara.users import Role, authenticate, load_users, role_at_least
from serve.api_schema import CAMERA_BODY, LOGIN_BODY, REVIEW_BODY
from serve.console.incidents import clip_file, read_incidents
from serve.console.sessions import COOKIE_NAME, CSRF_HEADER, LoginThrottle, SessionSigner, load_secret

if TYPE_CHECKING:
    from nexara.config import NexaraConfig
    from serve.rate_limit import RateLimiter

logger = logging.getLogger("ray.serve")

console_router = APIRouter()
STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# the page loads only its own files: no inline script, no third-party origin, no framing
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_SSE_POLL_S = 0.5
_SSE_HEARTBEAT_S = 15.0


@dataclass(slots=True)
class _ConsoleState:
    signer: SessionSigner
    throttle: LoginThrottle
    users_file: Path
    log_path: Path


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str


def _static(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if "/" in name or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise ApiError("not_found", f"no console file {name}")
    return FileResponse(path, media_type=_STATIC_TYPES[path.suffix], headers={"Content-Security-Policy": _CSP})


class ConsoleRoutes:
    """Mixed into :class:`serve.ingress.Ingress`; its state is made on first use (run folder from the
    camera manager)."""

    if TYPE_CHECKING:
        cfg: NexaraConfig
        manager: Any
        limiter: RateLimiter

        def _auth(self, request: Request) -> None: ...
        async def _check_source(self, camera: dict[str, Any]) -> dict[str, Any]: ...
        async def _manager_info(self) -> dict[str, Any]: ...
        async def _read_body(self, request: Request, limit: int) -> bytes: ...

    _console: _ConsoleState | None = None

    async def _console_state(self) -> _ConsoleState:
        conf = self.cfg.serve.console
        if not conf.enabled:
            raise ApiError("not_found", "the console is off (serve.console.enabled)")
        if self._console is None:
            info = await self._manager_info()
            secret = await asyncio.to_thread(load_secret, info["run_dir"])
            self._console = _ConsoleState(
                signer=SessionSigner(secret, conf.session_ttl_s),
                throttle=LoginThrottle(conf.login_max_failures, conf.login_window_s),
                users_file=Path(conf.users_file).expanduser().resolve(),
                log_path=Path(info["event_log"]),
            )
        return self._console

    async def _principal(self, request: Request, need: Role, *, change: bool = False) -> Principal:
        """Who calls: a bearer token (a machine, every right) or a signed-in user with at least role
        ``need``; ``change`` (a state change) also needs the session's CSRF token."""
        if request.headers.get("authorization"):
            self._auth(request)
            return Principal("api", "admin")
        st = await self._console_state()
        session = st.signer.verify(request.cookies.get(COOKIE_NAME))
        if session is None:
            raise ApiError("unauthorized", "sign in first (no valid session), or send a bearer token")
        user = (await asyncio.to_thread(load_users, st.users_file)).get(session.user)
        if user is None:
            raise ApiError("unauthorized", f"user {session.user} no longer exists; sign in again")
        if change:
            if not st.signer.check_csrf(session, request.headers.get(CSRF_HEADER)):
                raise ApiError("csrf_failed", "missing or wrong CSRF token (X-CSRF-Token header)")
            wait_s = self.limiter.acquire(f"user:{user.name}")
            if wait_s > 0:
                raise RateLimitedError(wait_s, f"too many requests; retry in {wait_s:.1f} s")
        if not role_at_least(user.role, need):
            raise ApiError("forbidden", f"user {user.name} is a {user.role}; this needs the {need} role")
        return Principal(user.name, user.role)

    async def _json_body(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # a cross-site form cannot send JSON without a CORS preflight, which this app never grants
            raise ApiError("invalid_request", "send a JSON body (Content-Type: application/json)")
        try:
            body = json.loads(await self._read_body(request, 16 * 1024))
        except ValueError:
            raise ApiError("invalid_json", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError("invalid_json", "the body must be a JSON object")
        return body

    # --- the page ----------------------------------------------------------------------------------

    @console_router.get("/ui", include_in_schema=False)
    async def console_root(self) -> RedirectResponse:
        return RedirectResponse("ui/")

    @console_router.get("/ui/", include_in_schema=False)
    async def console_page(self) -> FileResponse:
        await self._console_state()
        return _static("index.html")

    @console_router.get("/ui/static/{name}", include_in_schema=False)
    async def console_static(self, name: str) -> FileResponse:
        await self._console_state()
        return _static(name)

    # --- sessions ----------------------------------------------------------------------------------

    @console_router.post("/ui/api/login", openapi_extra=LOGIN_BODY)
    async def console_login(self, request: Request) -> JSONResponse:
        st = await self._console_state()
        body = await self._json_body(request)
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
            raise ApiError("invalid_request", "sign-in needs name and password (strings)")
        client = request.client.host if request.client else "?"
        wait_s = st.throttle.retry_after_s(name, client)
        if wait_s > 0:
            raise RateLimitedError(wait_s, f"too many failed sign-ins; retry in {wait_s:.0f} s")
        user = await asyncio.to_thread(authenticate, st.users_file, name, password)
        if user is None:
            st.throttle.failed(name, client)
            logger.warning("console: failed sign-in for %r from %s", name[:64], client)
            raise ApiError("unauthorized", "wrong user name or password")
        st.throttle.succeeded(name)
        cookie, session = st.signer.issue(user.name)
        resp = JSONResponse({"user": user.name, "role": user.role, "csrf": st.signer.csrf_token(session)})
        resp.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=int(st.signer.ttl_s),
            httponly=True,
            samesite="strict",
            secure=self.cfg.serve.console.secure_cookie,
            path="/",
        )
        return resp

    @console_router.post("/ui/api/logout")
    async def console_logout(self, request: Request) -> JSONResponse:
        await self._principal(request, "viewer", change=True)
        resp = JSONResponse({"signed_out": True})
        resp.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return resp

    @console_router.get("/ui/api/session")
    async def console_session(self, request: Request) -> dict[str, Any]:
        who = await self._principal(request, "viewer")
        st = await self._console_state()
        session = st.signer.verify(request.cookies.get(COOKIE_NAME))
        return {
            "user": who.name,
            "role": who.role,
            "csrf": st.signer.csrf_token(session) if session else None,
            "pre_alert": self.cfg.windows.pre_alert,
            "enter_threshold": self.cfg.confirmation.enter_threshold,
        }

    # --- cameras -----------------------------------------------------------------------------------

    @console_router.get("/ui/api/cameras")
    async def console_cameras(self, request: Request) -> dict[str, Any]:
        await self._principal(request, "viewer")
        return {"cameras": [st.to_dict() for st in await self.manager.cameras.remote()]}

    @console_router.post("/ui/api/cameras", status_code=201, openapi_extra=CAMERA_BODY)
    async def console_add_camera(self, request: Request) -> dict[str, Any]:
        from serve.ingress import _camera_error

        await self._principal(request, "admin", change=True)
        camera = await self._check_source(await self._json_body(request))
        try:
            return (await self.manager.add.remote(camera, persist=True)).to_dict()  # type: ignore[no-any-return]
        except Exception as exc:
            raise _camera_error(exc) from None

    @console_router.delete("/ui/api/cameras/{camera_id}")
    async def console_remove_camera(self, camera_id: str, request: Request) -> dict[str, Any]:
        from serve.ingress import _camera_error

        await self._principal(request, "admin", change=True)
        try:
            return (await self.manager.remove.remote(camera_id)).to_dict()  # type: ignore[no-any-return]
        except Exception as exc:
            raise _camera_error(exc) from None

    @console_router.get("/ui/api/cameras/{camera_id}/frame.jpg", response_model=None)
    async def console_frame(self, camera_id: str, request: Request) -> Response:
        from serve.ingress import _camera_error

        await self._principal(request, "viewer")
        try:
            data = await self.manager.frame_jpeg.remote(camera_id)
        except Exception as exc:
            raise _camera_error(exc) from None
        return Response(data, media_type="image/jpeg", headers={"cache-control": "no-store"})

    # --- incidents and reviews -----------------------------------------------------------------------

    @console_router.get("/ui/api/incidents")
    async def console_incidents(self, request: Request) -> dict[str, Any]:
        await self._principal(request, "viewer")
        st = await self._console_state()
        offset = st.log_path.stat().st_size if st.log_path.exists() else 0
        incidents = await asyncio.to_thread(read_incidents, st.log_path)
        return {"incidents": list(reversed(incidents.values())), "offset": offset}

    @console_router.get("/ui/api/incidents/{event_id}")
    async def console_incident(self, event_id: str, request: Request) -> dict[str, Any]:
        from actors.event_log import EventLog

        await self._principal(request, "viewer")
        st = await self._console_state()
        incident = (await asyncio.to_thread(read_incidents, st.log_path)).get(event_id)
        if incident is None:
            raise ApiError("event_not_found", f"no event {event_id}")

        def reviews() -> list[dict[str, Any]]:
            with EventLog(st.log_path) as log:
                return [r.model_dump(mode="json") for r in log.reviews(event_id)]

        return {**incident, "review_history": await asyncio.to_thread(reviews)}

    @console_router.get("/ui/api/events/{event_id}/clip", response_model=None)
    async def console_clip(self, event_id: str, request: Request) -> FileResponse:
        await self._principal(request, "viewer")
        st = await self._console_state()
        found, clip = await asyncio.to_thread(clip_file, st.log_path, event_id)
        if not found:
            raise ApiError("event_not_found", f"no event {event_id}")
        if clip is None:
            raise ApiError("no_clip", f"event {event_id} has no evidence clip (clips are off)")
        path = Path(clip)
        if not path.is_file() and path.with_suffix(".mkv").is_file():
            path = path.with_suffix(".mkv")
        if not path.is_file():
            raise ApiError("clip_not_ready", f"the evidence clip of {event_id} is still being recorded")
        # FileResponse answers Range requests (206), which the browser's <video> seeks with
        media = "video/mp4" if path.suffix == ".mp4" else "video/x-matroska"
        return FileResponse(path, media_type=media, content_disposition_type="inline", filename=path.name)

    @console_router.post("/v1/events/{event_id}/review", status_code=201, openapi_extra=REVIEW_BODY)
    async def review_event(self, event_id: str, request: Request) -> dict[str, Any]:
        from actors.event_log import EventLog

        who = await self._principal(request, "operator", change=True)
        st = await self._console_state()
        body = await self._json_body(request)
        verdict, note = body.get("verdict"), body.get("note")
        if verdict not in ("confirmed", "dismissed"):
            raise ApiError("invalid_review", f"verdict must be confirmed or dismissed, got {verdict!r}")
        if note is not None and not isinstance(note, str):
            raise ApiError("invalid_review", "note must be a string or null")
        if not st.log_path.exists():
            raise ApiError("event_not_found", f"no event {event_id}")

        def append() -> dict[str, Any]:
            with EventLog(st.log_path) as log:
                try:
                    return log.append_review(event_id, verdict, who.name, note).model_dump(mode="json")
                except InvalidInputError as exc:
                    if str(exc).startswith("no event"):
                        raise ApiError("event_not_found", f"no event {event_id}") from None
                    raise ApiError("invalid_review", str(exc)) from None

        review = await asyncio.to_thread(append)
        logger.info("review of %s by %s: %s", event_id, who.name, verdict)
        return review

    @console_router.get("/v1/events/{event_id}/reviews")
    async def event_reviews(self, event_id: str, request: Request) -> dict[str, Any]:
        from actors.event_log import EventLog

        await self._principal(request, "viewer")
        st = await self._console_state()
        if not st.log_path.exists():
            return {"reviews": []}

        def read() -> list[dict[str, Any]]:
            with EventLog(st.log_path) as log:
                return [r.model_dump(mode="json") for r in log.reviews(event_id)]

        return {"reviews": await asyncio.to_thread(read)}

    # --- live updates ------------------------------------------------------------------------------

    @console_router.get("/ui/api/stream")
    async def console_stream(self, request: Request, offset: int = 0) -> Response:
        """Server-sent events: one ``incident`` message (the whole folded incident) each time a line
        about it is appended after byte ``offset`` (or the ``Last-Event-ID`` a reconnect sends)."""
        await self._principal(request, "viewer")
        st = await self._console_state()
        last_id = request.headers.get("last-event-id", "")
        pos = int(last_id) if last_id.isdigit() else max(0, offset)

        async def messages() -> Any:
            nonlocal pos
            idle_s = 0.0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                touched = await asyncio.to_thread(_new_event_ids, st.log_path, pos)
                if touched is not None:
                    ids, pos = touched
                    incidents = await asyncio.to_thread(read_incidents, st.log_path) if ids else {}
                    for event_id in ids:
                        if event_id in incidents:
                            yield f"id: {pos}\nevent: incident\ndata: {json.dumps(incidents[event_id])}\n\n"
                    idle_s = 0.0
                await asyncio.sleep(_SSE_POLL_S)
                idle_s += _SSE_POLL_S
                if idle_s >= _SSE_HEARTBEAT_S:  # keeps proxies from closing a quiet stream
                    yield ": keep-alive\n\n"
                    idle_s = 0.0

        return StreamingResponse(
            messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


def _new_event_ids(log_path: Path, pos: int) -> tuple[list[str], int] | None:
    """Event ids of the complete lines after byte ``pos`` and the new position; None when nothing new."""
    try:
        size = log_path.stat().st_size
    except FileNotFoundError:
        return None
    if size <= pos:
        return None
    with log_path.open("rb") as f:
        f.seek(pos)
        data = f.read(size - pos)
    cut = data.rfind(b"\n") + 1
    if cut == 0:
        return None
    ids: list[str] = []
    for raw in data[:cut].splitlines():
        try:
            event_id = json.loads(raw).get("event_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(event_id, str) and event_id not in ids:
            ids.append(event_id)
    return ids, pos + cut
