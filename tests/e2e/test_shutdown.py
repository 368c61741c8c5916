"""Graceful stop of a real `nexara watch` / `nexara serve` (own session, private Ray with its dashboard):
an incident is open on a looped shared clip when the signal comes (SIGTERM to the process, as
`docker stop` sends it; SIGINT to the process group, as Ctrl-C does); the process exits 0 within its
stop deadline, every incident in the event log is ended with a reason, and no process of its session,
nor any it had started, is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from cluster.local_head import free_port

REPO = Path(__file__).resolve().parents[2]
CLIP = "fight/fi003.mp4"
TOKEN = "shutdown-test-token-0123456789"
STOP_TIMEOUT_S = 60

pytestmark = pytest.mark.timeout(900)


def _config(tmp_path: Path, shared_clips: Path, port: int) -> Path:
    # enter 0.01 / exit 0.0: the first scored window opens an incident that nothing but the stop ends
    path = tmp_path / "config.yaml"
    path.write_text(
        "ray: {num_cpus: 2, include_dashboard: true, object_store_memory_mb: 256}\n"
        f"serve: {{port: {port}, source_policy: {{file_roots: ['{shared_clips}']}}}}\n"
        "confirmation: {enter_threshold: 0.01, exit_threshold: 0.0, k: 1, n: 1}\n"
    )
    return path


def _incidents(log: Path) -> dict[str, list[dict[str, object]]]:
    by_id: dict[str, list[dict[str, object]]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if "kind" in rec:
                by_id.setdefault(str(rec["event_id"]), []).append(rec)
    return by_id


def _session(sid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.Error, ProcessLookupError):
            continue
    return out


@pytest.mark.parametrize(
    ("command", "signum"),
    [
        pytest.param("watch", signal.SIGINT, id="watch-SIGINT"),
        pytest.param("serve", signal.SIGTERM, id="serve-SIGTERM"),
        pytest.param("watch", signal.SIGTERM, marks=pytest.mark.slow, id="watch-SIGTERM"),
        pytest.param("serve", signal.SIGINT, marks=pytest.mark.slow, id="serve-SIGINT"),
    ],
)
def test_signal_stops_cleanly(command: str, signum: signal.Signals, shared_clips: Path, tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, shared_clips, port)
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "nexara.cli", "--config", str(cfg), command]
    if command == "watch":
        argv += [str(shared_clips / CLIP), "--loop"]
    argv += ["--run-dir", str(run_dir), "--stop-timeout", str(STOP_TIMEOUT_S)]
    # a loaded 2-core machine took over the default 60 s to register the raylet
    env = {**os.environ, "NEXARA_API_TOKEN": TOKEN, "RAY_raylet_start_wait_time_s": "300"}
    env.pop("RAY_ADDRESS", None)
    out = (tmp_path / "out.log").open("wb")
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        log = run_dir / "events.jsonl"
        deadline = time.monotonic() + 600
        added = command == "watch"
        while not any(r[0]["kind"] == "start" for r in _incidents(log).values()):
            assert proc.poll() is None, (tmp_path / "out.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "out.log").read_text()[-3000:]
            if not added and "serving on" in (tmp_path / "out.log").read_text():
                r = httpx.post(
                    f"http://127.0.0.1:{port}/v1/cameras",
                    json={"id": "cam", "url": str(shared_clips / CLIP), "loop": True},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=120,
                )
                assert r.status_code == 201, r.text
                added = True
            time.sleep(1)
        before = psutil.Process(proc.pid).children(recursive=True)
        assert len(before) >= 5, before  # Ray (gcs, raylet, dashboard, agents, workers) runs under it
        t0 = time.monotonic()
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # Ctrl-C reaches the whole foreground group
        else:
            proc.send_signal(signum)
        rc = proc.wait(timeout=STOP_TIMEOUT_S + 30)
        stop_s = time.monotonic() - t0
        text = (tmp_path / "out.log").read_text()
        assert rc == 0, text[-3000:]
        assert f"{signum.name}: stopping the cameras" in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        incidents = _incidents(log)
        assert incidents
        for event_id, recs in incidents.items():
            assert recs[0]["kind"] == "start", recs
            assert recs[-1]["kind"] == "end" and recs[-1]["end_reason"] == "shutdown", (event_id, recs[-1])
        time.sleep(1)
        left = _session(proc.pid) + [p for p in before if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [(p.pid, p.name()) for p in left]
        print(f"{command} {signum.name}: exit 0 after {stop_s:.1f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in _session(proc.pid):
            p.kill()
