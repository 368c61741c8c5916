"""The operator console's HTTP side on the real Serve app (local Ray, real HTTP): sign-in with hashed
passwords, throttled failures, session cookie flags, CSRF on every state change, roles, reviews appended
to the real event log (and refused ones writing nothing), the evidence clip with Range requests, live
updates over server-sent events. Incidents are appended to the event log the way a stream actor appends
them (a real H.264 clip from the shared footage as evidence), so no camera has to find a fight here;
tests/browser/ drives a real stream in a real browser."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.compose import concat_clips
from actors.event_log import EventLog

TOKEN = "console-token-0123456789abcdef"
PASSWORDS = {"ada": "admin-pass-1", "oli": "operator-pass-1", "vic": "viewer-pass-1"}

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def incident(event_id: str, camera_id: str, clip_path: str | None, *, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """The lines a stream actor logs for one incident (start, updates, end)."""
    rows = []
    for seq, kind in enumerate(kinds):
        rows.append(
            {
                "event_id": event_id,
                "kind": kind,
                "seq": seq,
                "camera_id": camera_id,
                "start_s": 10.0,
                "end_s": 10.0 + seq if kind == "end" else None,
                "at_s": 12.0 + seq,
                "peak_probability": min(0.99, 0.7 + 0.1 * seq),
                "mean_probability": 0.7,
                "tier": "alert",
                "windows": 2 + seq,
                "end_reason": "quiet" if kind == "end" else None,
                "clip_path": clip_path,
            }
        )
    return rows


@pytest.fixture(scope="module")
def console(ray_local: None, shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    from nexara.config import NexaraConfig
    from nexara.users import add_user
    from serve.builder import run_local

    os.environ["NEXARA_API_TOKEN"] = TOKEN
    base = tmp_path_factory.mktemp("console")
    run_dir = base / "run"
    users = base / "users.json"
    for name, role in (("ada", "admin"), ("oli", "operator"), ("vic", "viewer")):
        add_user(users, name, role, PASSWORDS[name])
    clip = base / "evidence.mp4"  # H.264, like a remuxed evidence clip of an H.264 camera
    concat_clips([str(next(shared_clips.rglob("fi003.mp4")))], clip, size_hw=(240, 320), fps=10)
    cfg = NexaraConfig.model_validate(
        {
            "serve": {
                "port": _free_port(),
                "source_policy": {"file_roots": [str(shared_clips.parent)]},
                "console": {"users_file": str(users), "login_max_failures": 3, "login_window_s": 30},
            },
            "sinks": {"run_dir": str(run_dir)},
        }
    )
    run_local(cfg, run_dir)
    log = EventLog(run_dir / cfg.sinks.event_log)
    for row in incident("evt-ended", "cam-a", str(clip), kinds=("start", "update", "end")):
        log.append(row)
    url = f"http://127.0.0.1:{cfg.serve.port}"
    yield {"cfg": cfg, "url": url, "log": log, "clip": clip, "run_dir": run_dir}
    log.close()
    serve.shutdown()
    _kill_manager(cfg.serve.app_name)


def _kill_manager(app_name: str) -> None:
    """The camera manager is a detached actor (it outlives ingress restarts): a later module's app of the same
    name would otherwise get this one, with this module's settings (no webhook, this run folder)."""
    import ray

    from actors.stream_actor import get_manager

    try:
        ray.kill(get_manager(app_name))
    except ValueError:  # never created
        pass


def _signed_in(url: str, name: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, timeout=60)
    r = client.post("/ui/api/login", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf"]


def _log_bytes(ctx: dict[str, Any]) -> bytes:
    return Path(ctx["log"].path).read_bytes()


def test_page_and_static_files_are_served_from_this_origin_only(console: dict[str, Any]) -> None:
    with httpx.Client(base_url=console["url"], timeout=60) as client:
        page = client.get("/ui/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for name in ("app.js", "style.css"):
            r = client.get(f"/ui/static/{name}")
            assert r.status_code == 200 and r.text
            assert "cdn" not in r.text.lower()
        assert client.get("/ui/static/..%2Froutes.py").status_code == 404
        assert client.get("/ui/static/nothing.js").status_code == 404
        # nothing else without a session
        assert client.get("/ui/api/incidents").status_code == 401
        assert client.get("/ui/api/cameras").status_code == 401


def test_sign_in_sets_a_strict_httponly_cookie_and_wrong_passwords_are_throttled(console: dict[str, Any]) -> None:
    url = console["url"]
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/ui/api/login", json={"name": "oli", "password": PASSWORDS["oli"]})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert r.json()["role"] == "operator" and r.json()["csrf"]
        me = client.get("/ui/api/session").json()
        assert me["user"] == "oli" and me["csrf"] == r.json()["csrf"]
    with httpx.Client(base_url=url, timeout=60) as client:
        # a form post (not JSON) is refused: a cross-site page cannot send JSON without a preflight
        assert client.post("/ui/api/login", data={"name": "vic", "password": "x"}).status_code == 422
        codes = [client.post("/ui/api/login", json={"name": "vic", "password": "wrong"}).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        r = client.post("/ui/api/login", json={"name": "vic", "password": PASSWORDS["vic"]})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
        assert "nexara_session" not in client.cookies


def test_reviews_need_csrf_and_operator_role_and_a_known_event(console: dict[str, Any]) -> None:
    url = console["url"]
    before = _log_bytes(console)
    oli, csrf = _signed_in(url, "oli")
    body = {"verdict": "dismissed", "note": "a hug"}
    r = oli.post("/v1/events/evt-ended/review", json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = oli.post("/v1/events/evt-ended/review", json=body, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = oli.post("/v1/events/no-such-event/review", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404 and r.json()["error"]["code"] == "event_not_found"
    r = oli.post("/v1/events/evt-ended/review", json={"verdict": "maybe"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_review"
    from nexara.users import add_user

    # a viewer added while the app runs can sign in at once (vic is throttled by the test above)

    add_user(console["cfg"].serve.console.users_file, "val", "viewer", "viewer-pass-2")
    PASSWORDS["val"] = "viewer-pass-2"
    val, val_csrf = _signed_in(url, "val")
    r = val.post("/v1/events/evt-ended/review", json=body, headers={"X-CSRF-Token": val_csrf})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    r = val.post("/ui/api/cameras", json={"id": "x", "url": "rtsp://example.com/x"}, headers={"X-CSRF-Token": val_csrf})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = val.delete("/ui/api/cameras/x", headers={"X-CSRF-Token": val_csrf})
    assert r.status_code == 403
    assert _log_bytes(console) == before, "a refused review wrote to the event log"

    r = oli.post("/v1/events/evt-ended/review", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    review = r.json()
    assert review["record"] == "review" and review["user"] == "oli" and review["verdict"] == "dismissed"
    assert review["note"] == "a hug" and review["event_id"] == "evt-ended"
    # the latest review wins; both are kept
    r = oli.post("/v1/events/evt-ended/review", json={"verdict": "confirmed"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    inc = oli.get("/ui/api/incidents/evt-ended").json()
    assert inc["review"]["verdict"] == "confirmed" and inc["reviews"] == 2
    assert [x["verdict"] for x in inc["review_history"]] == ["dismissed", "confirmed"]
    assert inc["state"] == "ended" and [p["kind"] for p in inc["trace"]] == ["start", "update", "end"]
    # the same action with the machine token; the events API never returns review lines
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    r = api.post("/v1/events/evt-ended/review", json={"verdict": "dismissed", "note": None})
    assert r.status_code == 201 and r.json()["user"] == "api"
    assert [x["verdict"] for x in api.get("/v1/events/evt-ended/reviews").json()["reviews"]][-1] == "dismissed"
    events = api.get("/v1/events", params={"limit": 100}).json()["events"]
    assert {e["kind"] for e in events} == {"start", "update", "end"}
    with EventLog(console["log"].path) as log:
        assert log.bad_lines == 0 and len(log.reviews("evt-ended")) == 3
    for c in (oli, val, api):
        c.close()


def test_clip_is_served_with_range_requests(console: dict[str, Any]) -> None:
    oli, _ = _signed_in(console["url"], "oli")
    size = console["clip"].stat().st_size
    r = oli.get("/ui/api/events/evt-ended/clip", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.headers["content-range"] == f"bytes 0-99/{size}"
    assert r.headers["content-type"] == "video/mp4" and len(r.content) == 100
    assert oli.get("/ui/api/events/nope/clip").status_code == 404
    with httpx.Client(base_url=console["url"], timeout=60) as anon:
        assert anon.get("/ui/api/events/evt-ended/clip").status_code == 401
    oli.close()


def test_new_incidents_arrive_over_server_sent_events(console: dict[str, Any]) -> None:
    vic_free, _ = _signed_in(console["url"], "oli")
    offset = vic_free.get("/ui/api/incidents").json()["offset"]
    got: list[dict[str, Any]] = []

    def listen() -> None:
        with vic_free.stream("GET", "/ui/api/stream", params={"offset": offset}, timeout=60) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    if got[-1]["state"] == "ended":
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(1.5)
    rows = incident("evt-live", "cam-b", None, kinds=("start", "end"))
    console["log"].append(rows[0])
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.1)
    assert got and got[0]["event_id"] == "evt-live" and got[0]["state"] == "open"
    console["log"].append(rows[1])
    t.join(20)
    assert got[-1]["event_id"] == "evt-live" and got[-1]["state"] == "ended" and got[-1]["has_clip"] is False
    vic_free.close()


def test_admin_adds_and_removes_cameras_through_the_source_policy(console: dict[str, Any]) -> None:
    ada, csrf = _signed_in(console["url"], "ada")
    headers = {"X-CSRF-Token": csrf}
    r = ada.post("/ui/api/cameras", json={"id": "meta", "url": "http://169.254.169.254/x"}, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "source_not_allowed"
    path = str(console["clip"].parent / "not-allowed.mp4")
    r = ada.post("/ui/api/cameras", json={"id": "outside", "url": path}, headers=headers)
    assert r.status_code == 422
    assert ada.post("/ui/api/cameras", json={"id": "nocsrf", "url": path}).status_code == 403
    assert ada.get("/ui/api/cameras").json() == {"cameras": []}
    quiet = str(next(Path(console["cfg"].serve.source_policy.file_roots[0]).rglob("nofi066.mp4")))
    r = ada.post("/ui/api/cameras", json={"id": "quiet", "url": quiet, "pacing": "fast"}, headers=headers)
    assert r.status_code == 201, r.text
    assert [c["source_id"] for c in ada.get("/ui/api/cameras").json()["cameras"]] == ["quiet"]
    r = ada.delete("/ui/api/cameras/quiet", headers=headers)
    assert r.status_code == 200 and r.json()["source_id"] == "quiet"
    assert ada.get("/ui/api/cameras").json() == {"cameras": []}
    ada.close()


def test_sign_out_ends_the_session_in_the_browser(console: dict[str, Any]) -> None:
    oli, csrf = _signed_in(console["url"], "oli")
    assert oli.post("/ui/api/logout").status_code == 403  # a state change: CSRF needed
    assert oli.post("/ui/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert oli.get("/ui/api/session").status_code == 401
    oli.close()


def test_wall_tile_picture_is_the_cells_latest_frame_as_a_small_jpeg(console: dict[str, Any]) -> None:
    """A real source split into a 1x2 grid: each cell's tile picture is a JPEG of that cell (its aspect
    ratio, at most 320 px wide), for a signed-in user's session or a bearer token, and nobody else."""
    import cv2
    import numpy as np

    ada, csrf = _signed_in(console["url"], "ada")
    quiet = str(next(Path(console["cfg"].serve.source_policy.file_roots[0]).rglob("nofi066.mp4")))
    camera = {"id": "halves", "url": quiet, "pacing": "fast", "grid": {"rows": 1, "cols": 2}}
    assert ada.post("/ui/api/cameras", json=camera, headers={"X-CSRF-Token": csrf}).status_code == 201
    user, _ = _signed_in(console["url"], "oli")  # vic is throttled by the sign-in test for a while
    try:
        deadline = time.monotonic() + 120
        r = user.get("/ui/api/cameras/halves-r0c1/frame.jpg")
        while r.status_code == 404 and time.monotonic() < deadline:  # no frame analysed yet
            time.sleep(0.5)
            r = user.get("/ui/api/cameras/halves-r0c1/frame.jpg")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
        assert r.headers["cache-control"] == "no-store"
        tile = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        (cell,) = [c for c in ada.get("/ui/api/cameras").json()["cameras"][0]["cells"] if c["box"][0] > 0]
        x0, y0, x1, y1 = cell["box"]
        assert tile.shape[1] <= 320 and abs(tile.shape[0] / tile.shape[1] - (y1 - y0) / (x1 - x0)) < 0.02
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=console["url"], timeout=60) as anonymous:
            assert anonymous.get("/ui/api/cameras/halves-r0c0/frame.jpg", headers=bearer).status_code == 200
            assert anonymous.get("/ui/api/cameras/halves-r0c0/frame.jpg").status_code == 401
        missing = user.get("/ui/api/cameras/nope/frame.jpg")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "camera_not_found"
    finally:
        assert ada.delete("/ui/api/cameras/halves", headers={"X-CSRF-Token": csrf}).status_code == 200
        ada.close()
        user.close()


def test_event_page_data_has_the_peak_windows_members(console: dict[str, Any]) -> None:
    """An incident logged with the peak window's member probabilities shows them; one from an older log
    (no ``members``) has none and still reads."""
    rows = incident("evt-members", "cam-m", None, kinds=("start", "end"))
    rows[0]["members"] = {"flow_lr": 0.71, "i3d_lr": 0.88}
    rows[1]["members"] = {"flow_lr": 0.8, "i3d_lr": 0.93}
    for row in rows:
        console["log"].append(row)
    user, _ = _signed_in(console["url"], "oli")  # vic is throttled by the sign-in test for a while
    assert user.get("/ui/api/incidents/evt-members").json()["members"] == {"flow_lr": 0.8, "i3d_lr": 0.93}
    assert user.get("/ui/api/incidents/evt-ended").json()["members"] is None
    user.close()
