"""Soak with faults: a real `nexara watch` (its own Ray, the Serve app, stream actors) on N cameras -- looped
files with fights spliced in, a monitor wall, a camera over HTTP from a local server -- for a fixed time while
faults come on a schedule:

* kill (SIGKILL) the embedding replica (``Backbone`` / ``ClipBackbone``) and the ``VotingEnsemble`` replica;
* kill a stream actor's process (its camera must come back);
* stall, then cut, the HTTP source; inject garbage bytes into it mid-stream;
* take the webhook receiver down, then up;
* SIGKILL `nexara watch` while an incident is open, and start it again on the same run folder.

At the end `nexara watch` gets SIGTERM (a clean stop) and the run is audited from the event log, the webhook
receiver's record (by Standard Webhooks ``webhook-id``) and the dead-letter file. It prints windows due /
cut / scored / dropped / failed, events in the log, events delivered (each by idempotency key), incidents and
how they ended, the RSS of every process at start and end (growth per hour), the p95 verdict lag, and exits
non-zero when an event in the log was not delivered, an idempotency key was delivered with two different
bodies, an incident was left open or started twice, or a camera did not come back.

    nice -n 5 .venv/bin/python benchmarks/soak.py --minutes 10 --cameras 4 --wall

Verdict lag is wall-clock (now - camera start - end of the latest scored window), split into how far the
verdicts trail the frames read and how fast the readers kept up (stream seconds per wall second): on a loaded
machine the readers fall behind real time and the wall-clock lag grows with it. Ray's ``DashboardAgent`` and
``RuntimeEnvAgent`` outlive a SIGKILLed `nexara watch` (they report the raylet's death to the dead GCS and
hang there); a service manager's cgroup kill removes them, and the soak lists them ("orphans") and kills them.

The model is $NEXARA_MODEL_DIR or, unset, the CPU-light motion model (say so: the I3D clip model costs ~3 s
per window on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")).resolve()
CLIPS = SHARED / "data" / "surveillance-fight"
NORMALS = ["nofi066.mp4", "nofi076.mp4", "nofi150.mp4", "nofi068.mp4", "nofi108.mp4", "nofi092.mp4"]
FIGHTS = ["fi003.mp4", "fi010.mp4", "fi020.mp4"]
APP = "nexara"
ALL_FAULTS = (
    "kill_embed_replica",
    "stall_http",
    "kill_ensemble_replica",
    "cut_http",
    "garbage_http",
    "kill_stream_actor",
    "webhook_down",
    "webhook_up",
    "kill_watch",
)

logger = logging.getLogger("soak")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clip(name: str) -> str:
    found = sorted(CLIPS.rglob(name))
    if not found:
        raise SystemExit(f"{name} not in {CLIPS} (set NEXARA_SHARED)")
    return str(found[0])


# --- inputs ------------------------------------------------------------------------------------------


def make_inputs(work: Path, cameras: int, wall: bool, rng: random.Random) -> tuple[list[dict[str, Any]], Path]:
    """Camera configs (files looped in real time, a wall) and the MPEG-TS the HTTP camera serves."""
    from actors.compose import compose_wall_video, concat_clips

    work.mkdir(parents=True, exist_ok=True)
    normals = [_clip(n) for n in NORMALS]
    cams: list[dict[str, Any]] = []
    n_files = max(0, cameras - 1 - int(wall))
    for i in range(n_files):
        path = work / f"cam{i}.mp4"
        if not path.exists():
            order = rng.sample(normals, 3)
            if i % 2 == 0:  # every other camera has a fight in its loop
                order.insert(2, _clip(FIGHTS[(i // 2) % len(FIGHTS)]))
            concat_clips(order, path, size_hw=(240, 320), fps=10)
        cams.append({"id": f"cam{i}", "url": str(path), "pacing": "realtime", "loop": True})
    if wall:
        path = work / "wall.mp4"
        if not path.exists():
            n = normals
            cells = [[n[4], n[5]], [n[2], _clip(FIGHTS[0]), n[3]], [n[5], n[3]], [n[3], n[2]]]
            compose_wall_video(cells, path, rows=2, cols=2, cell_hw=(240, 320), fps=10, duration_s=30)
        cams.append(
            {"id": "wall", "url": str(path), "pacing": "realtime", "loop": True, "grid": {"rows": 2, "cols": 2}}
        )
    ts = work / "http.ts"
    if not ts.exists():
        concat_clips([normals[0], _clip(FIGHTS[1]), normals[1], normals[2]], ts, size_hw=(240, 320), fps=10)
    return cams, ts


# --- the HTTP camera: a real local server that can stall, cut and corrupt its stream --------------------


class VideoServer:
    """Serves one MPEG-TS at about real-time rate (so the reader holds little buffered data); each request
    serves the whole file (the reader reconnects at its end). :meth:`stall`, :meth:`cut` and :meth:`garbage`
    act on the response being sent."""

    def __init__(self, path: Path, duration_s: float) -> None:
        self.data = path.read_bytes()
        self.rate_bps = 1.3 * len(self.data) / duration_s
        self.requests = 0
        self.stall_s = 0.0
        self.cut_now = False
        self.garbage_bytes = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.ts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
        h.send_response(200)
        h.send_header("Content-Type", "video/mp2t")
        h.end_headers()
        chunk = 188 * 40
        t0 = time.monotonic()
        sent = 0
        try:
            while sent < len(self.data):
                with self.lock:
                    stall, self.stall_s = self.stall_s, 0.0
                    cut, self.cut_now = self.cut_now, False
                    junk, self.garbage_bytes = self.garbage_bytes, 0
                if cut:
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                if stall:
                    time.sleep(stall)  # the connection stays open and silent: the reader's read timeout
                    return
                part = self.data[sent : sent + chunk]
                if junk:  # the next packets keep their 4-byte TS headers and carry random payloads
                    noise = random.Random(sent).randbytes(len(part))
                    part = b"".join(part[i : i + 4] + noise[i + 4 : i + 188] for i in range(0, len(part), 188))
                    with self.lock:
                        self.garbage_bytes = max(0, junk - len(part))
                h.wfile.write(part)
                sent += chunk
                ahead = sent / self.rate_bps - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        except OSError:  # the reader went away (it timed out, or reconnected)
            return

    def stall(self, seconds: float) -> None:
        with self.lock:
            self.stall_s = seconds

    def cut(self) -> None:
        with self.lock:
            self.cut_now = True

    def garbage(self, nbytes: int) -> None:
        with self.lock:
            self.garbage_bytes = nbytes

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the webhook receiver: real HTTP, records every POST by webhook-id -------------------------------


class Receiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.posts: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with owner.lock:
                    owner.posts.append((str(self.headers.get("webhook-id")), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# --- processes -------------------------------------------------------------------------------------------


def _cmd(p: Any) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except Exception:
        return ""


def role_of(p: Any) -> str:
    """A process's role in the run (Ray worker titles: ``ray::StreamActor``, ``ray::ServeReplica:app:X``)."""
    cmd = _cmd(p)
    if cmd.startswith("ray::"):
        title = cmd.split()[0][5:]
        if title.startswith("ServeReplica:"):
            return "replica " + title.split(":")[-1].split(".")[0]
        return title.split(".")[0]
    for name in ("raylet", "gcs_server", "dashboard_agent", "runtime_env_agent", "log_monitor", "monitor.py"):
        if name in cmd:
            return name.replace(".py", "")
    if "nexara.cli" in cmd and " watch" in cmd:
        return "nexara watch"
    return os.path.basename(cmd.split()[0]) if cmd else "?"


def tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _running(p: Any) -> bool:
    import psutil

    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _alive(before: list[Any], sid: int) -> list[Any]:
    """Processes of a killed `nexara watch` still running: its former children and its session."""
    left = [p for p in before[1:] if _running(p)]
    return left + [p for p in session_procs(sid) if p not in left]


def session_procs(sid: int) -> list[Any]:
    import psutil

    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.Error, ProcessLookupError):
            continue
    return out


def rss_by_role(pid: int) -> dict[str, tuple[int, float]]:
    """Role -> (process count, RSS MiB summed) over the watch process tree, plus the soak driver."""
    import psutil

    out: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for p in tree(pid):
        try:
            rss = p.memory_info().rss / 2**20
        except psutil.Error:
            continue
        r = out[role_of(p)]
        r[0] += 1
        r[1] += rss
    out["soak driver"] = [1, psutil.Process().memory_info().rss / 2**20]
    return {k: (int(v[0]), float(v[1])) for k, v in out.items()}


# --- the soak ------------------------------------------------------------------------------------------


@dataclass
class Run:
    work: Path
    run_dir: Path
    config: Path
    port: int
    token: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_lines: list[str] = field(default_factory=list)
    orphans_after_kill: list[str] = field(default_factory=list)

    def start(self) -> None:
        argv = [sys.executable, "-m", "nexara.cli", "--config", str(self.config), "watch"]
        argv += ["--run-dir", str(self.run_dir), "--stop-timeout", "90"]
        self.starts += 1
        out = (self.work / f"watch-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def client(self) -> Any:
        import httpx

        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def wait_ready(self, expected: set[str], timeout_s: float) -> float:
        """Seconds until every camera of ``expected`` streams (its first verdict scored)."""
        t0 = time.monotonic()
        with self.client() as c:
            while time.monotonic() - t0 < timeout_s:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nexara watch exited {self.proc.returncode}: {self.tail()}")
                if " not started: " in self.tail():
                    raise RuntimeError(f"a camera did not start: {self.tail()}")
                try:
                    cams = c.get("/v1/cameras").json()["cameras"]
                    ok = {s["source_id"] for s in cams if s["cells"] and all(x["windows_scored"] for x in s["cells"])}
                    if expected <= ok:
                        return time.monotonic() - t0
                except Exception:
                    pass
                time.sleep(1.0)
        raise RuntimeError(f"cameras not all scoring after {timeout_s:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return (self.work / f"watch-{self.starts}.log").read_text(errors="replace")[-3000:]


class Poller:
    """Polls ``GET /v1/cameras`` every ``every_s``: the latest counters of each stream actor incarnation
    (source, started_unix_s) and verdict-lag samples."""

    def __init__(self, run: Run, stride_s: float, window_s: float, every_s: float = 2.0) -> None:
        self.run = run
        self.stride_s = stride_s
        self.window_s = window_s
        self.every_s = every_s
        self.latest: dict[tuple[str, float], dict[str, Any]] = {}
        self.lags: list[float] = []
        self.reader_lags: list[float] = []  # verdicts behind the frames read (stream s): scoring alone
        self.clock: dict[tuple[str, float], list[float]] = {}  # incarnation -> [wall0, stream0, wall, stream]
        self.polls = 0
        self.failed_polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        client = self.run.client()
        while not self.stop.wait(self.every_s):
            try:
                cams = client.get("/v1/cameras").json()["cameras"]
            except Exception:
                self.failed_polls += 1
                continue
            now = time.time()
            self.polls += 1
            for s in cams:
                if s.get("started_unix_s") is None:
                    continue
                key = (s["source_id"], round(s["started_unix_s"], 3))
                self.latest[key] = s
                clock = self.clock.setdefault(key, [now, s["stream_time_s"], now, s["stream_time_s"]])
                clock[2:] = [now, s["stream_time_s"]]
                if s["state"] != "streaming":
                    continue
                for c in s["cells"]:
                    if c["last_window_end_s"] is not None:
                        self.lags.append(now - s["started_unix_s"] - c["last_window_end_s"])
                        self.reader_lags.append(s["stream_time_s"] - c["last_window_end_s"])
        client.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)

    def windows(self) -> dict[str, int]:
        keys = ("windows_made", "windows_scored", "windows_dropped", "windows_failed", "windows_no_signal")
        out = dict.fromkeys(("due", *keys, "windows_gated", "in_flight_at_last_poll", "unaccounted"), 0)
        for s in self.latest.values():
            for c in s["cells"]:
                for k in (*keys, "windows_gated"):
                    out[k] += int(c.get(k, 0))
                out["due"] += max(0, int((s["stream_time_s"] - self.window_s) / self.stride_s) + 1)
            pending = int(s["queued"]) + int(s["in_flight"])
            out["in_flight_at_last_poll"] += pending
            # cut, but neither answered (scored, gated, no signal) nor counted dropped or failed, nor pending at
            # the incarnation's last poll: windows lost with a killed stream actor (or cut after that poll)
            answered = sum(int(c[k]) for c in s["cells"] for k in keys[1:])
            out["unaccounted"] += max(0, sum(int(c["windows_made"]) for c in s["cells"]) - answered - pending)
        return out


def open_incidents(log: Path) -> dict[str, list[dict[str, Any]]]:
    """Event id -> its records, for incidents without an end."""
    by_id: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    if log.exists():
        for line in log.read_bytes().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "kind" in rec:
                by_id[rec["event_id"]].append(rec)
    return {k: v for k, v in by_id.items() if not any(r["kind"] == "end" for r in v)}


def kill_procs(run: Run, match: str) -> list[int]:
    assert run.proc is not None
    pids = []
    for p in tree(run.proc.pid):
        if match in _cmd(p).split(" ")[0]:
            try:
                p.send_signal(signal.SIGKILL)
                pids.append(p.pid)
            except Exception:
                pass
    return pids


def soak(
    *,
    minutes: float,
    cameras: int,
    wall: bool,
    seed: int,
    out: Path,
    faults: tuple[str, ...] = ALL_FAULTS,
    ready_timeout_s: float = 600.0,
    after_faults_s: float = 60.0,
) -> dict[str, Any]:
    """Run the soak (see the module docstring); returns its figures and the list of failed checks."""
    import psutil

    rng = random.Random(seed)
    out = out.resolve()
    work = out / "inputs"
    os.environ.setdefault("NEXARA_MODEL_DIR", str(REPO / "nexara" / "models" / "motion-2026.11.21-2"))
    from nexara.model_manifest import read_manifest

    model_dir = os.environ["NEXARA_MODEL_DIR"]
    manifest = read_manifest(model_dir, verify=False)
    t_inputs = time.monotonic()
    cams, ts = make_inputs(work, cameras, wall, rng)
    video = VideoServer(ts, duration_s=_duration(ts))
    cams.append({"id": "http", "url": video.url, "pacing": "realtime", "backoff_initial_s": 0.2, "backoff_max_s": 2})
    hook_port = _free_port()
    receiver = Receiver(hook_port)
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    cfg = {
        "ray": {"num_cpus": 2, "include_dashboard": False, "object_store_memory_mb": 256},
        "media": {"read_timeout_s": 5},
        # 2 logical CPUs fit the replicas and about three stream actors at the default 0.25 each
        "serve": {"port": port, "stream_num_cpus": 0.1},
        "sinks": {
            "run_dir": str(out),
            "clip_pre_s": 2,
            "clip_post_s": 2,
            "webhook": {
                "url": f"http://127.0.0.1:{hook_port}/hook",
                "backoff_initial_s": 0.2,
                "backoff_max_s": 2.0,
                "max_attempts": 100,
            },
        },
        "cameras": cams,
    }
    config = out / "soak-config.json"  # JSON is YAML
    config.write_text(json.dumps(cfg, indent=1))
    token = secrets.token_hex(16)
    env = {**os.environ, "NEXARA_API_TOKEN": token, "RAY_raylet_start_wait_time_s": "300"}
    env.pop("RAY_ADDRESS", None)
    run = Run(work=out, run_dir=run_dir, config=config, port=port, token=token, env=env)
    from nexara.config import NexaraConfig

    ncfg = NexaraConfig.model_validate(cfg)
    _out(
        f"soak: {len(cams)} sources ({', '.join(c['id'] for c in cams)}), {minutes:g} min, seed {seed}, model "
        f"{manifest.version} ({model_dir}); inputs ready in {time.monotonic() - t_inputs:.0f} s"
    )
    load: list[tuple[str, tuple[float, float, float]]] = [("start", os.getloadavg())]
    expected = {c["id"] for c in cams}
    run.start()
    assert run.proc is not None
    ready_s = run.wait_ready(expected, ready_timeout_s)
    _out(f"nexara watch ready in {ready_s:.0f} s (pid {run.proc.pid})")
    poller = Poller(run, ncfg.windows.stride_s, ncfg.windows.window_s)
    rss: dict[str, dict[str, tuple[int, float]]] = {"start": rss_by_role(run.proc.pid)}
    t_rss0 = time.monotonic()
    t0 = time.monotonic()
    total_s = minutes * 60
    # faults spread evenly over the run; `nexara watch` is killed at 3/4 of it at the latest, so its restart
    # (minutes on a loaded 2-core machine) still leaves a stretch of run after it (at least 60 s in any case)
    others = [f for f in faults if f != "kill_watch"]
    schedule = [(f, (i + 1) / (len(others) + 1) * 0.7 * total_s) for i, f in enumerate(others)]
    schedule += [("kill_watch", 0.75 * total_s)] if "kill_watch" in faults else []
    done: list[dict[str, Any]] = []
    restart_s: list[float] = []
    failures: list[str] = []
    rss_segments: list[tuple[str, str, float]] = []
    for fault, at in schedule:
        while time.monotonic() - t0 < at:
            if run.proc.poll() is not None:
                failures.append(f"nexara watch exited on its own ({run.proc.returncode}): {run.tail()}")
                break
            time.sleep(0.5)
        if failures:
            break
        rec: dict[str, Any] = {"fault": fault, "at_s": round(time.monotonic() - t0, 1)}
        if fault == "kill_embed_replica":
            name = "ClipBackbone" if manifest.clip is not None else "Backbone"
            rec["pids"] = kill_procs(run, f"ServeReplica:{APP}:{name}")
        elif fault == "kill_ensemble_replica":
            rec["pids"] = kill_procs(run, f"ServeReplica:{APP}:VotingEnsemble")
        elif fault == "kill_stream_actor":
            actors = [p for p in tree(run.proc.pid) if _cmd(p).startswith("ray::StreamActor")]
            if actors:
                victim = rng.choice(actors)
                victim.send_signal(signal.SIGKILL)
                rec["pids"] = [victim.pid]
        elif fault == "stall_http":
            video.stall(3 * ncfg.media.read_timeout_s)
        elif fault == "cut_http":
            video.cut()
        elif fault == "garbage_http":
            video.garbage(188 * 400)
        elif fault == "webhook_down":
            receiver.down()
        elif fault == "webhook_up":
            receiver.up()
        elif fault == "kill_watch":
            deadline = time.monotonic() + 90  # mid-alert: wait (a while) for an incident to be open
            while not open_incidents(run_dir / "events.jsonl") and time.monotonic() < deadline:
                time.sleep(0.5)
            rec["open_incidents"] = len(open_incidents(run_dir / "events.jsonl"))
            rss["before kill"] = rss_by_role(run.proc.pid)
            rss_segments.append(("start", "before kill", time.monotonic() - t_rss0))
            before = tree(run.proc.pid)
            sid = os.getsid(run.proc.pid)
            t_kill = time.monotonic()
            run.proc.send_signal(signal.SIGKILL)
            run.proc.wait(30)

            # the rest notice their raylet is gone; Ray's agents may not (see the report)
            agents = {"DashboardAgent", "RuntimeEnvAgent"}
            while time.monotonic() - t_kill < 60 and any(role_of(p) not in agents for p in _alive(before, sid)):
                time.sleep(1.0)
            time.sleep(3.0)
            left = _alive(before, sid)
            rec["tree_gone_s"] = round(time.monotonic() - t_kill, 1)
            rec["orphans"] = sorted({role_of(p) for p in left})
            for p in left:  # the next run needs the port and the CPUs
                try:
                    p.kill()
                except psutil.Error:
                    pass
            t_restart = time.monotonic()
            run.start()
            ready = run.wait_ready(expected, ready_timeout_s)
            restart_s.append(time.monotonic() - t_restart)
            rec["restart_s"] = round(restart_s[-1], 1)
            rss["after restart"] = rss_by_role(run.proc.pid)
            t_rss0 = time.monotonic()
            _out(f"  nexara watch restarted, cameras scoring after {ready:.0f} s")
        done.append(rec)
        extra = json.dumps({k: v for k, v in rec.items() if k not in ("fault", "at_s")})
        _out(f"  {rec['at_s']:>6.1f} s  {fault} {extra}")
        load.append((fault, os.getloadavg()))
    t_last = time.monotonic()
    while not failures and (time.monotonic() - t0 < total_s or time.monotonic() - t_last < after_faults_s):
        if run.proc.poll() is not None:
            failures.append(f"nexara watch exited on its own ({run.proc.returncode}): {run.tail()}")
            break
        time.sleep(1.0)
    load.append(("end", os.getloadavg()))
    # cameras back? every source has a live incarnation scoring
    with run.client() as c:
        try:
            final = {s["source_id"]: s for s in c.get("/v1/cameras").json()["cameras"]}
        except Exception as exc:
            final = {}
            failures.append(f"camera list not read at the end: {exc}")
    missing = sorted(expected - set(final))
    if missing:
        failures.append(f"cameras missing at the end: {missing}")
    if run.proc.poll() is None:
        rss["end"] = rss_by_role(run.proc.pid)
    rss_segments.append(("after restart" if "after restart" in rss else "start", "end", time.monotonic() - t_rss0))
    poller.close()
    t_stop = time.monotonic()
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGTERM)
        try:
            rc = run.proc.wait(150)
        except subprocess.TimeoutExpired:
            os.killpg(run.proc.pid, signal.SIGKILL)
            rc = -9
        if rc != 0:
            failures.append(f"nexara watch exit code {rc} after SIGTERM: {run.tail()}")
    stop_s = time.monotonic() - t_stop
    time.sleep(3)  # the receiver answers the last POSTs
    receiver.down()
    video.close()

    # --- audit ---------------------------------------------------------------------------------------
    log = run_dir / "events.jsonl"
    records = [json.loads(x) for x in log.read_bytes().splitlines() if x.strip()] if log.exists() else []
    events = [r for r in records if "kind" in r]
    logged = {f"{e['event_id']}:{e['kind']}:{e['seq']}": e for e in events}
    posts: dict[str, list[bytes]] = collections.defaultdict(list)
    for key, body in receiver.posts:
        posts[key].append(body)
    dead = []
    dl = run_dir / "webhook-dead-letter.jsonl"
    if dl.exists():
        dead = [json.loads(x) for x in dl.read_bytes().splitlines() if x.strip()]
    not_delivered = sorted(set(logged) - set(posts))
    unknown = sorted(set(posts) - set(logged))
    conflicting = sorted(k for k, bodies in posts.items() if len({_body_key(b) for b in bodies}) > 1)
    redelivered = sum(len(b) - 1 for b in posts.values())
    incidents: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in events:
        incidents[e["event_id"]].append(e)
    starts_twice = sorted(k for k, v in incidents.items() if sum(r["kind"] == "start" for r in v) > 1)
    left_open = sorted(k for k, v in incidents.items() if not any(r["kind"] == "end" for r in v))
    no_reason = sorted(k for k, v in incidents.items() if any(r["kind"] == "end" and not r["end_reason"] for r in v))
    reasons = collections.Counter(r["end_reason"] for e in incidents.values() for r in e if r["kind"] == "end")
    if len(events) != len(logged):
        failures.append(f"{len(events) - len(logged)} duplicate lines in the event log")
    if not_delivered:
        failures.append(f"{len(not_delivered)} logged events never delivered: {not_delivered[:5]}")
    if unknown:
        failures.append(f"{len(unknown)} delivered events not in the log: {unknown[:5]}")
    if conflicting:
        failures.append(f"{len(conflicting)} idempotency keys delivered with different bodies: {conflicting[:5]}")
    if starts_twice or left_open or no_reason:
        failures.append(f"incidents: started twice {starts_twice}, left open {left_open}, no reason {no_reason}")
    w = poller.windows()
    lags = sorted(poller.lags)
    p95 = lags[int(0.95 * (len(lags) - 1))] if lags else float("nan")
    rlags = sorted(poller.reader_lags)
    rp95 = rlags[int(0.95 * (len(rlags) - 1))] if rlags else float("nan")
    wall_s = sum(c[2] - c[0] for c in poller.clock.values())
    clock_ratio = sum(c[3] - c[1] for c in poller.clock.values()) / wall_s if wall_s > 0 else float("nan")
    incarnations = collections.Counter(src for src, _ in poller.latest)
    result = {
        "model": f"{manifest.version} ({model_dir})",
        "sources": len(cams),
        "cells": sum(4 if c.get("grid") else 1 for c in cams),
        "minutes": minutes,
        "windows": w,
        "events_logged": len(logged),
        "events_delivered_distinct": len(set(posts) & set(logged)),
        "webhook_posts": len(receiver.posts),
        "redelivered_same_key": redelivered,
        "dead_lettered": len(dead),
        "not_delivered": len(not_delivered),
        "conflicting_keys": len(conflicting),
        "incidents": len(incidents),
        "incidents_end_reasons": dict(reasons),
        "incidents_left_open": len(left_open),
        "incidents_started_twice": len(starts_twice),
        "verdict_lag_p95_s": round(p95, 2),
        "verdict_behind_reader_p95_s": round(rp95, 2),
        "stream_clock_ratio": round(clock_ratio, 3),
        "verdict_lag_samples": len(lags),
        "stream_actor_incarnations": dict(incarnations),
        "http_requests": video.requests,
        "corrupt_packets_seen": sum(int(s.get("corrupt_packets", 0)) for s in poller.latest.values()),
        "reconnects_seen": sum(int(s.get("reconnects", 0)) for s in poller.latest.values()),
        "faults": done,
        "watch_restart_s": [round(x, 1) for x in restart_s],
        "watch_stop_s": round(stop_s, 1),
        "rss_mib": rss,
        "rss_segments": rss_segments,
        "load_avg": load,
        "polls": poller.polls,
        "failed_polls": poller.failed_polls,
        "failures": failures,
    }
    (out / "soak.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _body_key(body: bytes) -> str:
    # the same event may be redelivered after a restart with a new logged_unix_s; the event is the rest
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
    data.pop("logged_unix_s", None)
    return json.dumps(data, sort_keys=True)


def _duration(path: Path) -> float:
    from nexara.media import probe

    info = probe(str(path))
    return float(info.duration_s or 30.0)


def report(r: dict[str, Any]) -> str:
    w = r["windows"]
    lines = [
        f"model: {r['model']}",
        f"{r['sources']} sources / {r['cells']} cameras (cells), {r['minutes']:g} min",
        "",
        f"{'windows due (stream s / stride)':<44}{w['due']:>8}",
        f"{'windows cut':<44}{w['windows_made']:>8}",
        f"{'windows scored':<44}{w['windows_scored']:>8}",
        f"{'windows dropped':<44}{w['windows_dropped']:>8}",
        f"{'windows failed':<44}{w['windows_failed']:>8}",
        f"{'windows no-signal':<44}{w['windows_no_signal']:>8}",
        f"{'queued + in flight at last poll':<44}{w['in_flight_at_last_poll']:>8}",
        f"{'cut after the last poll or lost in a kill':<44}{w['unaccounted']:>8}",
        f"{'events in the log':<44}{r['events_logged']:>8}",
        f"{'events delivered (distinct webhook-id)':<44}{r['events_delivered_distinct']:>8}",
        f"{'  webhook POSTs (redelivered same id)':<44}{r['webhook_posts']:>8} ({r['redelivered_same_key']})",
        f"{'  not delivered / dead-lettered':<44}{r['not_delivered']:>8} / {r['dead_lettered']}",
        f"{'  same id, different body':<44}{r['conflicting_keys']:>8}",
        f"{'incidents':<44}{r['incidents']:>8}  ends: {r['incidents_end_reasons']}",
        f"{'incidents left open / started twice':<44}{r['incidents_left_open']:>8} / {r['incidents_started_twice']}",
        f"{'verdict lag p95 (s, wall clock)':<44}{r['verdict_lag_p95_s']:>8}  ({r['verdict_lag_samples']} samples)",
        f"{'  verdicts behind the frames read, p95 (s)':<44}{r['verdict_behind_reader_p95_s']:>8}",
        f"{'  stream s read per wall s (1.0 = real time)':<44}{r['stream_clock_ratio']:>8}",
        f"{'HTTP camera: requests / reconnects / corrupt':<44}{r['http_requests']:>8} / {r['reconnects_seen']} / "
        f"{r['corrupt_packets_seen']}",
        f"stream actor incarnations: {r['stream_actor_incarnations']}",
        f"watch restart (s): {r['watch_restart_s']}, clean stop (s): {r['watch_stop_s']}",
        "",
        "RSS MiB by process role (count x) at each mark; growth per hour over each segment:",
    ]
    rss = r["rss_mib"]
    marks = list(rss)
    roles = sorted({k for m in marks for k in rss[m]})
    lines.append(f"{'role':<28}" + "".join(f"{m:>18}" for m in marks))
    for role in roles:
        row = f"{role:<28}"
        for m in marks:
            n, mib = rss[m].get(role, (0, 0.0))
            row += f"{(f'{n}x {mib:.0f}' if n else '-'):>18}"
        lines.append(row)
    for a, b, secs in r["rss_segments"]:
        if a in rss and b in rss and secs >= 60:  # shorter segments say nothing about growth per hour
            ta = sum(v[1] for v in rss[a].values())
            tb = sum(v[1] for v in rss[b].values())
            growth = {
                k: (rss[b][k][1] - rss[a][k][1]) * 3600 / secs
                for k in rss[a]
                if k in rss[b] and rss[a][k][0] == rss[b][k][0]
            }
            top = ", ".join(f"{k} {v:+.0f}" for k, v in sorted(growth.items(), key=lambda kv: -abs(kv[1]))[:5])
            lines.append(
                f"{a} -> {b} ({secs / 60:.1f} min): total {ta:.0f} -> {tb:.0f} MiB, "
                f"{(tb - ta) * 3600 / secs:+.0f} MiB/h; top (same process count): {top}"
            )
    loads = "; ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}/{v[2]:.2f}" for k, v in r["load_avg"])
    lines.append(f"load average (1, 5, 15 min): {loads}")
    lines.append("faults: " + ", ".join(f"{f['fault']}@{f['at_s']:.0f}s" for f in r["faults"]))
    lines.append("checks: " + ("all passed" if not r["failures"] else "FAILED"))
    lines += [f"  - {f}" for f in r["failures"]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--cameras", type=int, default=4, help="sources in all (the HTTP camera and the wall count)")
    ap.add_argument("--wall", action="store_true", help="one source is a 2x2 monitor wall")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "runs" / "soak"))
    ap.add_argument("--faults", default=",".join(ALL_FAULTS), help="comma list, in order (default: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (CLIPS / "clips.csv").is_file():
        raise SystemExit(f"shared clips not found at {CLIPS} (set NEXARA_SHARED)")
    if args.cameras < 1 + int(args.wall):
        raise SystemExit("--cameras counts the HTTP camera (and the wall): give at least 1 (2 with --wall)")
    faults = tuple(f for f in args.faults.split(",") if f)
    bad = [f for f in faults if f not in ALL_FAULTS]
    if bad:
        raise SystemExit(f"unknown faults {bad}; known: {', '.join(ALL_FAULTS)}")
    out = Path(args.out) / time.strftime("%Y%m%dT%H%M%S")
    r = soak(minutes=args.minutes, cameras=args.cameras, wall=args.wall, seed=args.seed, out=out, faults=faults)
    _out("\n" + report(r))
    _out(f"\nfigures: {out / 'soak.json'}")
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
