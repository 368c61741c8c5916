"""The live path end to end on a real local Ray instance: the Serve app (batched backbone, voting
ensemble, HTTP ingress) and stream actors scoring real footage from ../shared, real HTTP, a real event
log, real evidence clips, a real webhook receiver."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.compose import Segment, compose_wall_video, concat_clips

TOKEN = "e2e-token-0123456789abcdef"
NORMALS = ["nofi066.mp4", "nofi076.mp4", "nofi150.mp4", "nofi068.mp4", "nofi108.mp4", "nofi092.mp4"]
FIGHT = "fi003.mp4"

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clip(root: Path, name: str) -> str:
    found = sorted(root.rglob(name))
    assert found, f"{name} not in {root}"
    return str(found[0])


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012 (shared by the handler instances)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).received.append({"key": self.headers.get("idempotency-key"), "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def live(ray_local: None, shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    from nexara.config import NexaraConfig
    from serve.builder import run_local

    os.environ["NEXARA_API_TOKEN"] = TOKEN
    run_dir = tmp_path_factory.mktemp("live-run")
    hook_port = _free_port()
    cfg = NexaraConfig.model_validate(
        {
            "serve": {
                "port": _free_port(),
                "max_upload_mb": 2,
                # cameras over HTTP: the test's own videos and the shared clips, and the local test HTTP server
                "source_policy": {
                    "file_roots": [str(tmp_path_factory.getbasetemp()), str(shared_clips.parent)],
                    "allowed_networks": ["127.0.0.1/32"],
                },
                "rate_limit": {"per_minute": 600, "burst": 40},
            },
            "sinks": {
                "run_dir": str(run_dir),
                "clip_pre_s": 2,
                "clip_post_s": 2,
                "webhook": {
                    "url": f"http://127.0.0.1:{hook_port}/hook",
                    "backoff_initial_s": 0.2,
                    "backoff_max_s": 1.0,
                    "max_attempts": 100,
                },
            },
        }
    )
    run_local(cfg, run_dir)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{cfg.serve.port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    )
    yield {"cfg": cfg, "client": client, "run_dir": run_dir, "hook_port": hook_port}
    client.close()
    serve.shutdown()
    import ray

    from actors.stream_actor import get_manager

    ray.kill(get_manager(cfg.serve.app_name))  # detached: a later module's app would get this one's settings


def _wait_ended(client: httpx.Client, camera_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = client.get(f"/v1/cameras/{camera_id}").json()
        if st["state"] in ("ended", "failed"):
            return st
        time.sleep(0.5)
    raise AssertionError(f"camera {camera_id} did not end in {timeout_s} s: {st}")


def _events(client: httpx.Client, camera_id: str | None = None) -> list[dict[str, Any]]:
    params = {"limit": 1000, **({"camera_id": camera_id} if camera_id else {})}
    r = client.get("/v1/events", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


@pytest.fixture(scope="module")
def splice_video(shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float]:
    """Ordinary clips looped (twice) with one fight clip spliced in; returns (path, splice second)."""
    normals = [_clip(shared_clips, n) for n in NORMALS[:3]]
    order = [*normals, _clip(shared_clips, FIGHT), *normals[::-1], *normals]
    out = tmp_path_factory.mktemp("splice") / "splice.mp4"
    segments: list[Segment] = concat_clips(order, out, size_hw=(240, 320), fps=10)
    fight = next(s for s in segments if s.path.endswith(FIGHT))
    return str(out), fight.start_s


def test_spliced_fight_gives_one_alert_with_clip_and_webhook_exactly_once(
    live: dict[str, Any], splice_video: tuple[str, float]
) -> None:
    client, cfg = live["client"], live["cfg"]
    path, splice_s = splice_video
    _Receiver.received = []
    r = client.post("/v1/cameras", json={"id": "splice", "url": path, "pacing": "fast"})
    assert r.status_code == 201, r.text
    # the webhook receiver is DOWN until the first event is in the log, then comes up
    deadline = time.monotonic() + 240
    while not _events(client, "splice"):
        assert time.monotonic() < deadline, client.get("/v1/cameras/splice").json()
        time.sleep(0.3)
    time.sleep(1.0)
    server = ThreadingHTTPServer(("127.0.0.1", live["hook_port"]), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        st = _wait_ended(client, "splice")
        events = _events(client, "splice")
        starts = [e for e in events if e["kind"] == "start"]
        assert len(starts) == 1, events
        w = cfg.windows
        bound = w.window_s + cfg.confirmation.k * w.stride_s + 2.0
        assert splice_s <= starts[0]["at_s"] <= splice_s + bound, (starts[0], splice_s, bound)
        assert [e["kind"] for e in events][-1] == "end"
        assert st["cells"][0]["windows_dropped"] == 0  # a file read as fast as possible waits, never drops
        # evidence clip: recorded around the start, served over HTTP, real video
        clip = client.get(f"/v1/events/{starts[0]['event_id']}/clip")
        assert clip.status_code == 200 and len(clip.content) > 10_000
        from nexara.media import probe

        info = probe(clip.content)
        assert info.duration_s is not None and info.duration_s >= cfg.sinks.clip_pre_s + cfg.sinks.clip_post_s - 0.5
        # removing the camera flushes the webhook: every logged event arrives exactly once by key
        assert client.delete("/v1/cameras/splice").status_code == 200
        keys = [r["key"] for r in _Receiver.received]
        logged = [f"{e['event_id']}:{e['kind']}:{e['seq']}" for e in events]
        assert sorted(set(keys)) == sorted(logged), (keys, logged)
        assert len(keys) == len(set(keys))
    finally:
        server.shutdown()


def test_wall_with_a_fight_in_one_cell_alerts_for_that_camera_only(
    live: dict[str, Any], shared_clips: Path, tmp_path: Path
) -> None:
    client = live["client"]
    n = [_clip(shared_clips, x) for x in NORMALS]
    cells = [[n[4], n[5]], [n[2], _clip(shared_clips, FIGHT), n[3]], [n[5], n[3]], [n[3], n[2]]]
    wall = tmp_path / "wall.mp4"
    compose_wall_video(cells, wall, rows=2, cols=2, cell_hw=(240, 320), fps=10, duration_s=12)
    r = client.post(
        "/v1/cameras",
        json={"id": "wall", "url": str(wall), "pacing": "fast", "grid": {"rows": 2, "cols": 2, "margin_px": 4}},
    )
    assert r.status_code == 201, r.text
    st = _wait_ended(client, "wall")
    assert sorted(c["camera_id"] for c in st["cells"]) == ["wall-r0c0", "wall-r0c1", "wall-r1c0", "wall-r1c1"]
    assert all(c["windows_scored"] > 0 for c in st["cells"])
    events = [e for e in _events(client) if e["camera_id"].startswith("wall-")]
    assert events and {e["camera_id"] for e in events} == {"wall-r0c1"}, events
    assert client.get("/v1/cameras/wall-r0c1").json()["source_id"] == "wall"
    client.delete("/v1/cameras/wall")


class _CutFirstResponse(BaseHTTPRequestHandler):
    data = b""
    requests = 0

    def do_GET(self) -> None:
        cls = type(self)
        cls.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(cls.data)))
        self.end_headers()
        if cls.requests == 1:  # the stream stops mid-way: the server drops the connection
            self.wfile.write(cls.data[: len(cls.data) * 2 // 5])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(cls.data)

    def log_message(self, *args: Any) -> None:
        pass


def test_http_stream_that_stops_is_reconnected_and_counted(
    live: dict[str, Any], shared_clips: Path, tmp_path: Path
) -> None:
    client = live["client"]
    ts = tmp_path / "stream.ts"  # MPEG-TS: a live-stream format, read front to back without seeking
    concat_clips([_clip(shared_clips, n) for n in NORMALS[:4]], ts, size_hw=(240, 320), fps=10)
    _CutFirstResponse.data = ts.read_bytes()
    _CutFirstResponse.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutFirstResponse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.ts"
        r = client.post(
            "/v1/cameras",
            json={"id": "http-cam", "url": url, "pacing": "fast", "max_reconnects": 2, "backoff_initial_s": 0.2},
        )
        assert r.status_code == 201, r.text
        st = _wait_ended(client, "http-cam")
        assert st["reconnects"] >= 1, st
        assert st["cells"][0]["windows_scored"] > 0 and st["frames_in"] > 0
        assert _CutFirstResponse.requests >= 2
        client.delete("/v1/cameras/http-cam")
    finally:
        server.shutdown()


def test_killed_backbone_replica_is_replaced_and_no_event_is_missing(
    live: dict[str, Any], splice_video: tuple[str, float]
) -> None:
    import ray

    client = live["client"]
    path, splice_s = splice_video

    def backbone_replicas() -> list[str]:
        return [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if "Backbone" in a["name"] and a["name"].startswith("SERVE_REPLICA")
        ]

    before = backbone_replicas()
    assert len(before) == 1, before
    r = client.post("/v1/cameras", json={"id": "kill", "url": path, "pacing": "fast"})
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 240
    while True:
        cells = client.get("/v1/cameras/kill").json()["cells"]
        if cells and cells[0]["windows_scored"] >= 2:
            break
        assert time.monotonic() < deadline, cells
        time.sleep(0.2)
    ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
    st = _wait_ended(client, "kill")
    cell = st["cells"][0]
    assert cell["windows_failed"] == 0 and cell["windows_dropped"] == 0, cell
    events = _events(client, "kill")
    assert [e["kind"] for e in events if e["kind"] != "update"] == ["start", "end"], events
    assert splice_s <= events[0]["at_s"]
    after = backbone_replicas()
    assert len(after) == 1 and after != before, (before, after)
    client.delete("/v1/cameras/kill")


def test_bad_uploads_and_tokens_get_json_4xx(live: dict[str, Any], shared_clips: Path) -> None:
    client = live["client"]
    base = str(client.base_url)
    real = Path(_clip(shared_clips, FIGHT)).read_bytes()

    def post(body: bytes, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{base}/v1/predict", content=body, headers=headers, timeout=120)

    cases = {
        "not_a_video": post(b"this is not a video\n" * 50),
        "empty": post(b""),
        "truncated": post(real[: len(real) // 3]),
        "oversized": post(os.urandom(3 * 1024 * 1024)),
        "wrong_token": post(real, token="not-the-token-000000"),
        "no_token": post(real, token=None),
    }
    expected = {"not_a_video": 415, "empty": 400, "oversized": 413, "wrong_token": 401, "no_token": 401}
    for name, resp in cases.items():
        assert 400 <= resp.status_code < 500, (name, resp.status_code, resp.text)
        if name in expected:
            assert resp.status_code == expected[name], (name, resp.status_code, resp.text)
        err = resp.json()["error"]
        assert err["code"] and err["message"], (name, err)
    assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200  # the only open route
    assert httpx.get(f"{base}/v1/model", timeout=30).status_code == 401
    ok = post(real, token=TOKEN)
    assert ok.status_code == 200, ok.text
    rec = ok.json()
    assert {"violence_probability", "violent", "confidence", "members", "frames_used", "latency_ms"} <= set(rec)
    assert rec["violent"] is True and 0 <= rec["violence_probability"] <= 1


def test_camera_routes_validate_and_model_info(live: dict[str, Any], splice_video: tuple[str, float]) -> None:
    client = live["client"]
    assert client.post("/v1/cameras", json={"id": "no-url"}).status_code == 422
    assert (
        client.post("/v1/cameras", content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert client.get("/v1/cameras/nope").json()["error"]["code"] == "camera_not_found"
    assert client.delete("/v1/cameras/nope").status_code == 404
    assert client.get("/v1/events", params={"limit": 0}).status_code == 422
    r = client.post("/v1/cameras", json={"id": "dup", "url": splice_video[0], "pacing": "realtime"})
    assert r.status_code == 201, r.text
    assert client.post("/v1/cameras", json={"id": "dup", "url": splice_video[0]}).status_code == 409
    assert any(c["source_id"] == "dup" for c in client.get("/v1/cameras").json()["cameras"])
    assert client.delete("/v1/cameras/dup").status_code == 200
    assert not any(c["source_id"] == "dup" for c in client.get("/v1/cameras").json()["cameras"])
    model = client.get("/v1/model").json()
    assert model["members"] and model["threshold"] > 0 and model["vote"] == "soft"
    missing = client.post("/v1/cameras", json={"id": "missing", "url": "/no/such/file.mp4"})
    assert missing.status_code in (400, 422) and "missing" in missing.json()["error"]["message"]


def _scrape(port: int, name: str, camera: str) -> float | None:
    """Value of Prometheus series ``name`` with ``camera="<camera>"`` on the node's metrics port."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") and f'camera="{camera}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_live_metrics_reach_the_prometheus_endpoint(live: dict[str, Any], shared_clips: Path, tmp_path: Path) -> None:
    import ray

    from actors.live_metrics import METRICS, exported_name

    client = live["client"]
    video = tmp_path / "metrics.mp4"
    concat_clips([_clip(shared_clips, n) for n in NORMALS[2:5]], video, size_hw=(240, 320), fps=10)
    assert client.post("/v1/cameras", json={"id": "metrics", "url": str(video), "pacing": "fast"}).status_code == 201
    st = _wait_ended(client, "metrics")
    scored = st["cells"][0]["windows_scored"]
    assert scored > 0
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    series = {name: exported_name(name, kind) for name, kind, _, _ in METRICS}
    deadline = time.monotonic() + 90  # Ray's agent exports every few seconds
    value = None
    while time.monotonic() < deadline:
        value = _scrape(port, series["nexara_windows_scored"], "metrics")
        if value == scored:
            break
        time.sleep(2)
    assert value == scored, (value, scored)
    assert _scrape(port, series["nexara_last_score"], "metrics") is not None
    assert client.delete("/v1/cameras/metrics").status_code == 200


def test_refused_sources_get_one_generic_answer_and_start_nothing(live: dict[str, Any], tmp_path: Path) -> None:
    """No file-probing oracle and no server-side request forgery (serve.source_policy, SECURITY.md)."""
    client = live["client"]
    probes = [
        "/etc/passwd",  # exists, a text file
        "/no/such/dir/file.mp4",  # does not exist
        "file:///etc/hostname",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://127.0.0.1:8265/api/version",  # Ray's dashboard (loopback is allowed in this test, the port is not)
        "http://127.0.0.2:9000/cam.ts",  # loopback outside the allowed 127.0.0.1/32
        "http://[::1]:9000/cam.ts",
        "http://127.0.0.1:9000/${NEXARA_API_TOKEN}",  # no ${ENV} expansion for API cameras
    ]
    answers = {url: client.post("/v1/cameras", json={"id": "probe", "url": url}) for url in probes}
    for url, r in answers.items():
        assert r.status_code == 422, (url, r.status_code, r.text)
        assert r.json()["error"]["code"] == "source_not_allowed", (url, r.text)
    assert len({r.content for r in answers.values()}) == 1, {u: r.text for u, r in answers.items()}
    assert client.get("/v1/cameras/probe").status_code == 404
    assert not any(c["source_id"] == "probe" for c in client.get("/v1/cameras").json()["cameras"])
    # inside an allowed root the usual, precise answers remain
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 100)
    r = client.post("/v1/cameras", json={"id": "text", "url": str(text)})
    assert r.status_code == 201, r.text
    st = _wait_ended(client, "text", timeout_s=60)
    assert st["state"] == "failed" and st["frames_in"] == 0, st  # FFmpeg's tty demuxer is not allowed
    client.delete("/v1/cameras/text")
    r = client.post("/v1/cameras", json={"id": "gone", "url": str(tmp_path / "gone.mp4")})
    assert r.json()["error"]["code"] == "source_not_found", r.text


def test_post_routes_are_rate_limited_per_token(live: dict[str, Any]) -> None:
    client = live["client"]
    codes = []
    for _ in range(300):  # burst 40, 10 per second in this test's config
        r = client.post("/v1/cameras", content=b"{not json", headers={"Content-Type": "application/json"})
        codes.append(r.status_code)
        if r.status_code == 429:
            break
    assert codes[-1] == 429 and set(codes[:-1]) == {400}, codes
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert client.get("/v1/cameras").status_code == 200  # GET routes are not limited
    time.sleep(5)  # the bucket refills (40 / 10 per s) for the tests that follow


def test_the_token_is_in_no_log_and_no_run_file(live: dict[str, Any]) -> None:
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())  # type: ignore[attr-defined]
    leaks = []
    for folder in (session / "logs", live["run_dir"]):
        for f in folder.rglob("*"):
            if f.is_file() and TOKEN.encode() in f.read_bytes():
                leaks.append(str(f))
    assert leaks == []
