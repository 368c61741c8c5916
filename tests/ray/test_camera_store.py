"""Cameras added over the HTTP API come back when the app starts again on its run folder: the camera manager
keeps them in ``cameras.json`` (:mod:`actors.camera_store`) and a new manager restores them, each checked again
as a new API camera. Real parts: a local Ray instance, the Serve app on the motion model, real HTTP, stream
actors reading a real clip of ../shared."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(300)

TOKEN = "store-token-0123456789abcdef"
APP = "store"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(tmp: Path, clips: Path, app: str = APP) -> dict[str, Any]:
    from nexara.config import NexaraConfig

    cfg = NexaraConfig.model_validate(
        {
            "serve": {
                "app_name": app,
                "port": _free_port(),
                "source_policy": {"file_roots": [str(tmp), str(clips)]},
                "rate_limit": {"per_minute": 600, "burst": 40},
            },
            "sinks": {"run_dir": str(tmp / "runs"), "clips": False},
        }
    )
    return cfg.model_dump(mode="json")


@pytest.fixture
def app(ray_local: None, shared_clips: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    import ray
    from ray import serve

    from actors.stream_actor import get_manager
    from nexara.config import NexaraConfig
    from serve.builder import run_local

    os.environ["NEXARA_API_TOKEN"] = TOKEN
    settings = _settings(tmp_path, shared_clips)
    cfg = NexaraConfig.model_validate(settings)
    run_dir = tmp_path / "runs" / "run-1"
    run_local(cfg, run_dir)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{cfg.serve.port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    )
    yield {"cfg": cfg, "run_dir": run_dir, "client": client}
    client.close()
    serve.delete(APP)
    try:
        ray.kill(get_manager(APP))
    except ValueError:
        pass
    serve.shutdown()  # the HTTP proxy too: a later test's app starts its own on its own port


def _wait_streaming(manager: Any, camera_id: str, timeout_s: float = 120) -> Any:
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        st = ray.get(manager.status.remote(camera_id))
        if st.state == "streaming" or time.monotonic() > deadline:
            return st
        time.sleep(0.3)


def test_api_cameras_come_back_on_a_new_manager_and_removed_ones_do_not(
    app: dict[str, Any], shared_clips: Path, tmp_path: Path
) -> None:
    import ray

    from actors.stream_actor import get_manager
    from serve.builder import run_local

    client, run_dir = app["client"], app["run_dir"]
    clip = str(shared_clips / "noFight" / "nofi108.mp4")
    link = tmp_path / "soon-gone.mp4"  # a source file that disappears before the restart
    link.symlink_to(clip)
    for body in (
        {"id": "keep", "url": clip, "loop": True, "windows": {"stride_s": 2.0}},
        {"id": "gone", "url": clip, "loop": True},
        {"id": "lost", "url": str(link), "loop": True},
    ):
        r = client.post("/v1/cameras", json=body)
        assert r.status_code == 201, r.text
    assert client.delete("/v1/cameras/gone").status_code == 200
    before = client.get("/v1/cameras/keep").json()["config"]
    kept = json.loads((run_dir / "cameras.json").read_text())
    assert [c["id"] for c in kept["cameras"]] == ["keep", "lost"]  # written at each add and remove

    ray.kill(get_manager(APP))  # the manager dies (its stream actors with it), as in a kill -9 of `nexara serve`
    link.unlink()
    run_local(app["cfg"], run_dir)  # the app deployed again: its new ingress gets a new manager, which restores
    manager = get_manager(APP)
    restored = ray.get(manager.restore.remote(), timeout=180)  # waits for the restore the deploy started

    assert restored["keep"] is None and set(restored) == {"keep", "lost"}  # "gone" does not come back
    assert "source file not found" in str(restored["lost"])
    st = _wait_streaming(manager, "keep")
    assert st.state == "streaming", st
    assert dict(st.config) == before  # the same config, its per-camera windows override included
    lost = ray.get(manager.status.remote("lost"))
    assert lost.state == "failed" and "source file not found" in str(lost.error)
    listed = {c["source_id"]: c["state"] for c in client.get("/v1/cameras").json()["cameras"]}  # the new app's
    assert listed == {"keep": "streaming", "lost": "failed"}
    # the failed camera stays kept until an operator removes it
    assert [c["id"] for c in json.loads((run_dir / "cameras.json").read_text())["cameras"]] == ["keep", "lost"]
    ray.get(manager.remove.remote("lost"))
    assert [c["id"] for c in json.loads((run_dir / "cameras.json").read_text())["cameras"]] == ["keep"]
    # a graceful stop keeps the cameras for the next start
    ray.get(manager.stop_all.remote())
    assert [c["id"] for c in json.loads((run_dir / "cameras.json").read_text())["cameras"]] == ["keep"]
    # the server cannot keep a new camera (its cameras.json replaced by a folder): 503, and it is not started
    (run_dir / "cameras.json").unlink()
    (run_dir / "cameras.json").mkdir()
    r = client.post("/v1/cameras", json={"id": "unsaved", "url": clip})
    assert r.status_code == 503 and r.json()["error"]["code"] == "camera_not_saved", r.text
    assert "could not be written" in r.json()["error"]["message"]
    assert "unsaved" not in {c["source_id"] for c in client.get("/v1/cameras").json()["cameras"]}


def test_refused_and_corrupt_stores_are_reported_and_the_manager_goes_on(
    ray_local: None, shared_clips: Path, tmp_path: Path
) -> None:
    import ray

    from actors.stream_actor import get_or_create_manager

    settings = _settings(tmp_path, shared_clips, app="store-check")
    checked = tmp_path / "checked"
    checked.mkdir()
    entries = [
        {"id": "refused", "url": "/etc/hostname"},  # outside serve.source_policy.file_roots now
        {"id": "invalid", "url": str(shared_clips / "noFight" / "nofi108.mp4"), "pacing": "sideways"},
        {"url": "no-id.mp4"},
    ]
    (checked / "cameras.json").write_text(json.dumps({"version": 1, "cameras": entries}))
    manager = get_or_create_manager(settings, str(checked), "store-check")
    try:
        restored = ray.get(manager.restore.remote(), timeout=120)
        assert set(restored) == {"refused", "invalid"}
        assert "not allowed by the server's source policy" in str(restored["refused"])
        assert "/etc/hostname" not in str(restored["refused"])  # the reason only in the log (SECURITY.md)
        assert "pacing" in str(restored["invalid"])
        listed = {s.source_id: (s.state, s.error) for s in ray.get(manager.cameras.remote())}
        assert listed["refused"][0] == "failed" and listed["invalid"][0] == "failed"
        kept = json.loads((checked / "cameras.json").read_text())["cameras"]
        assert [c["id"] for c in kept] == ["refused", "invalid"]  # nothing an operator added is lost...
        assert len(list(checked.glob("cameras.json.bad-*"))) == 1  # ...the entry without an id is set aside

        corrupt = tmp_path / "corrupt"
        corrupt.mkdir()
        (corrupt / "cameras.json").write_text('{"version": 1, "cameras": [')
        for cid in ("refused", "invalid"):
            ray.get(manager.remove.remote(cid))
        assert ray.get(manager.adopt.remote(settings, str(corrupt)))  # no camera runs: takes the new folder
        assert ray.get(manager.restore.remote(), timeout=60) == {}
        info = ray.get(manager.info.remote())  # still answers
        assert info["run_dir"] == str(corrupt.resolve()) and info["unrestored"] == {}
        aside = list(corrupt.glob("cameras.json.bad-*"))
        assert len(aside) == 1 and aside[0].read_text() == '{"version": 1, "cameras": ['
    finally:
        ray.kill(manager)
