"""HTTP fuzzing of the real Serve app (local Ray, real HTTP on loopback) from its own OpenAPI schema with
schemathesis: every documented operation gets generated cases (schema examples, coverage of boundary and
wrong-typed values, random fuzzing), sent with a valid bearer token (and, for the console's routes, once
more with a signed-in session and its CSRF token). Properties: no 5xx, and every 4xx carries the one JSON
error shape ``{"error": {"code", "message"}}`` with the status :data:`nexara.errors.HTTP_STATUS` gives its
code; schemathesis also checks each response against the schema the app publishes (which documents that
error shape for every 4XX).

The fuzz app cannot start a camera: its source policy allows no scheme and no file root, so every source
a case names is refused (422) before the camera manager sees it. The rate limit is off (a fuzz run is
hundreds of POSTs with one token); ``test_console.py``/``test_live.py`` test the limiter itself.

``NEXARA_FUZZ_EXAMPLES`` (default 15) sets the cases per operation of the fuzzing phase; the run prints
operations, cases and failures at the end of the module.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")  # the dev group has it on Python >= 3.11 only
from hypothesis import HealthCheck, given, settings  # noqa: E402 (after the importorskip)
from hypothesis import strategies as st  # noqa: E402

TOKEN = "fuzz-token-0123456789abcdef"
ADMIN, ADMIN_PASSWORD = "ada", "admin-pass-1"
EXAMPLES = int(os.environ.get("NEXARA_FUZZ_EXAMPLES", "15"))
SSE_PATH = "/ui/api/stream"
# the console's session API and the review routes it shares with /v1 (bearer or session + CSRF)
SESSION_ROUTES = r"^/ui/api/|^/v1/events/\{event_id\}/review"
# reads that name no resource: a request the schema calls valid gets 200, nothing else
LISTINGS = {"/healthz", "/v1/events", "/v1/cameras", "/v1/model", "/ui/api/incidents", "/ui/api/cameras"}

pytestmark = pytest.mark.timeout(1800)

# what the run did, printed at module teardown: cases by operation, statuses, failures
CASES: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


def _incident_rows(event_id: str, camera_id: str, clip_path: str | None) -> list[dict[str, Any]]:
    """The lines a stream actor logs for one incident (start, update, end)."""
    return [
        {
            "event_id": event_id,
            "kind": kind,
            "seq": seq,
            "camera_id": camera_id,
            "start_s": 10.0,
            "end_s": 12.0 if kind == "end" else None,
            "at_s": 10.0 + seq,
            "peak_probability": 0.9,
            "mean_probability": 0.8,
            "tier": "alert",
            "windows": 2 + seq,
            "end_reason": "quiet" if kind == "end" else None,
            "clip_path": clip_path,
        }
        for seq, kind in enumerate(("start", "update", "end"))
    ]


def _bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fuzz_app(
    ray_local: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    from ray import serve

    from actors.event_log import EventLog
    from nexara.config import NexaraConfig
    from nexara.users import add_user
    from serve.builder import run_local
    from serve.console.sessions import COOKIE_NAME

    os.environ["NEXARA_API_TOKEN"] = TOKEN
    base = tmp_path_factory.mktemp("fuzz")
    users = base / "users.json"
    add_user(users, ADMIN, "admin", ADMIN_PASSWORD)
    cfg = NexaraConfig.model_validate(
        {
            "serve": {
                "port": _free_port(),
                # no scheme, no file root: every camera source a case names is refused before a stream starts
                "source_policy": {"schemes": [], "file_roots": []},
                "rate_limit": {"per_minute": 0},
                "console": {"users_file": str(users), "login_max_failures": 1000},
            },
            "sinks": {"run_dir": str(base / "run")},
        }
    )
    run_local(cfg, base / "run")
    # a few events in the real log, so the read routes (events, incidents, reviews, clips) read rows
    with EventLog(base / "run" / cfg.sinks.event_log) as log:
        for row in _incident_rows("evt-fuzz-1", "cam-a", str(base / "missing.mp4")):
            log.append(row)
        for row in _incident_rows("evt-fuzz-2", "cam-b", None)[:1]:
            log.append(row)
    url = f"http://127.0.0.1:{cfg.serve.port}"
    with httpx.Client(base_url=url, timeout=60) as login:
        r = login.post("/ui/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        session = {COOKIE_NAME: login.cookies[COOKIE_NAME]}
    client = httpx.Client(base_url=url, timeout=60)
    yield {"cfg": cfg, "url": url, "client": client, "session": session, "csrf": r.json()["csrf"]}
    total = sum(CASES.values())
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the run's figures, past pytest's capture (README, HTTP API)
        print(
            f"\nfuzz: {len(CASES)} operations, {total} cases (NEXARA_FUZZ_EXAMPLES={EXAMPLES}), "
            f"statuses {dict(sorted(STATUSES.items()))}"
        )
    client.close()
    serve.shutdown()
    import ray

    from actors.stream_actor import get_manager

    try:
        ray.kill(get_manager(cfg.serve.app_name))  # detached: a later module's app would get this one's settings
    except ValueError:
        pass


def test_the_app_serves_the_schema_the_cases_come_from(fuzz_app: dict[str, Any]) -> None:
    from serve.ingress import api

    raw = fuzz_app["client"].get("/openapi.json")
    assert raw.status_code == 200, raw.text
    served, built = raw.json(), api.openapi()
    differ = {
        f"{m.upper()} {p}"
        for p in served["paths"] | built["paths"]
        for m in served["paths"].get(p, {})
        if served["paths"][p][m] != built["paths"].get(p, {}).get(m)
    }
    first = sorted(differ)[0].split(" ") if differ else None
    assert not differ and served == built, (
        f"the served schema differs at {sorted(differ)}; first: {served['paths'][first[1]][first[0].lower()]} "
        f"!= {built['paths'][first[1]][first[0].lower()]}"
        if first
        else "the served schema differs outside paths"
    )


def test_a_full_page_of_events_is_a_valid_request(fuzz_app: dict[str, Any]) -> None:
    """limit = MAX_READ_LIMIT, the schema's maximum, was refused (422) once the log had events: the ingress
    asked the log for limit + 1 rows to find the next page."""
    from actors.event_log import MAX_READ_LIMIT

    r = fuzz_app["client"].get("/v1/events", params={"limit": MAX_READ_LIMIT}, headers=_bearer())
    assert r.status_code == 200, r.text
    assert [e["event_id"] for e in r.json()["events"]][:1] == ["evt-fuzz-1"] and r.json()["next_offset"] is None
    r = fuzz_app["client"].get("/v1/events", params={"limit": 2, "offset": 1}, headers=_bearer())
    assert r.status_code == 200 and len(r.json()["events"]) == 2 and r.json()["next_offset"] == 3, r.text


def check_error_shape(response: httpx.Response) -> None:
    """A 4xx body is ``{"error": {"code": str, "message": str}}`` (nothing else) and its status is the one
    :data:`nexara.errors.HTTP_STATUS` gives its code; never a 5xx."""
    from nexara.errors import http_status

    where = f"{response.request.method} {response.request.url}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:500]}"
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", "").startswith("application/json"), (
        f"{where} -> {response.status_code} {response.headers.get('content-type')}: {response.text[:300]}"
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where} -> {response.status_code}: {body}"
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message"}, f"{where}: {body}"
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"], f"{where}: {body}"
    if err["code"] != "http_error":  # Starlette's own statuses other than 404/405 keep their status
        assert response.status_code == http_status(err["code"]), f"{where} -> {response.status_code}: {body}"


def _send(client: httpx.Client, case: Any, headers: dict[str, str], cookies: dict[str, str]) -> httpx.Response:
    """The case over httpx (the project's HTTP client; schemathesis's own requests transport trips on
    urllib3-future, which grafana-client's niquests installs over urllib3)."""
    kw = case.as_transport_kwargs(base_url=str(client.base_url), headers=headers)
    content = kw.get("data")
    if isinstance(content, str):
        content = content.encode()
    request = client.build_request(
        kw["method"],
        kw["url"],
        params=kw.get("params") or None,
        headers=kw.get("headers") or None,
        json=kw.get("json") if "json" in kw else None,
        content=content if isinstance(content, bytes) else None,
        data=content if isinstance(content, dict) else None,
        files=kw.get("files"),
    )
    jar = {**(kw.get("cookies") or {}), **cookies}
    if jar:  # set per request: the client keeps no cookie between cases
        request.headers["cookie"] = "; ".join(f"{name}={value}" for name, value in jar.items())
    if case.path == SSE_PATH:
        # an event stream never ends: its status and headers are the answer (an error body is short JSON)
        response = client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                response.read()
        finally:
            response.close()
        return response
    return client.send(request)


def _fuzz(case: Any, ctx: dict[str, Any], headers: dict[str, str], cookies: dict[str, str]) -> None:
    ctx["client"].cookies.clear()
    response = _send(ctx["client"], case, headers, cookies)
    CASES[case.operation.label] += 1
    STATUSES[response.status_code] += 1
    check_error_shape(response)
    meta = case.meta
    if case.method.upper() == "GET" and case.path in LISTINGS and meta is not None and meta.generation.mode.is_positive:
        assert response.status_code == 200, f"valid {case.method} {case.path} {case.query} -> {response.text[:300]}"
    if case.path != SSE_PATH:
        from schemathesis.checks import not_a_server_error
        from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

        checks = [not_a_server_error, response_schema_conformance, negative_data_rejection]
        case.validate_response(response, checks=checks)


def _schema() -> Any:
    """The app's own OpenAPI schema (what ``/openapi.json`` serves; the test above checks they are equal),
    built in-process: the cases are generated at collection, before the app runs. ``NEXARA_FUZZ_SCHEMA``
    names a schema file to fuzz the app with instead (an older schema, to see what it promised wrongly)."""
    from serve.ingress import api

    path = os.environ.get("NEXARA_FUZZ_SCHEMA")
    return schemathesis.openapi.from_path(path) if path else schemathesis.openapi.from_dict(api.openapi())


schema = _schema()
_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True, database=None
)


@schema.parametrize()
@_SETTINGS
def test_every_operation_with_the_bearer_token(case: Any, fuzz_app: dict[str, Any]) -> None:
    _fuzz(case, fuzz_app, _bearer(), {})


@schema.include(path_regex=SESSION_ROUTES).parametrize()
@_SETTINGS
def test_console_operations_with_a_session_and_csrf_token(case: Any, fuzz_app: dict[str, Any]) -> None:
    _fuzz(case, fuzz_app, {"X-CSRF-Token": fuzz_app["csrf"]}, fuzz_app["session"])


# The page and its static files are not in the schema (include_in_schema=False: no API, no parameters but
# the file name), so their one input is fuzzed here directly.
@given(name=st.text(min_size=1, max_size=40))
@settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_console_static_file_names(name: str, fuzz_app: dict[str, Any]) -> None:
    from urllib.parse import quote

    r = fuzz_app["client"].get("/ui/static/" + quote(name, safe=""))
    check_error_shape(r)
    # 307: "." and ".." are dot segments the client resolves (to /ui/static/, redirected, or /ui/, the page)
    assert r.status_code in (200, 307, 404), f"{name!r} -> {r.status_code}: {r.text[:200]}"
    if r.status_code == 200:
        assert "/" not in name and r.headers["content-security-policy"], name
