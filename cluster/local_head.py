"""A ``ray start --head`` on this machine that can be stopped without touching any other Ray.

``ray stop`` kills every Ray process on the host by name, so a test or a script that shares the host
with other Ray instances starts its head in a private temp dir, on free ports, in its own session, and
stops exactly the processes of that head (found by PID: its session, its temp dir in their command line,
and their descendants). The project's venv is put first on the head's PATH: ``ray job submit``
entrypoints run with the head's PATH, so ``python -m nexara.cli ...`` then runs the project's interpreter.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil

log = logging.getLogger(__name__)

PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def auth_token() -> str:
    """Ray's cluster token, where Ray itself looks for it (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
    ``~/.ray/auth_token``): Ray reads ``RAY_AUTH_MODE`` once per process, so a process that imported
    Ray before setting it passes the token to the job client explicitly."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if token:
        return token.strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if not path.is_file():
        raise RuntimeError(f"no Ray auth token at {path}: run `ray get-auth-token --generate`")
    return path.read_text(encoding="utf-8").strip()


def venv_bin() -> Path:
    """The bin folder of the interpreter running this code (the project's venv under the CLI and tests)."""
    return Path(sys.executable).parent


class LocalHead:
    """One Ray head node with token auth, its dashboard (and job API) on 127.0.0.1, stopped by PID."""

    def __init__(self, *, num_cpus: float = 2, object_store_mb: int = 256, temp_root: str = "/tmp") -> None:
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        # Ray's socket paths live under the temp dir and must stay under 107 bytes: a short root.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="nxh-", dir=temp_root))
        self.ports = {flag: free_port() for flag in PORT_FLAGS}
        self._launcher: subprocess.Popen[bytes] | None = None
        self._sid: int | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['--dashboard-port']}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports['--port']}"

    @property
    def metrics_export_port(self) -> int:
        return self.ports["--metrics-export-port"]

    @property
    def service_discovery_file(self) -> Path:
        """The file Ray keeps up to date with every node's metrics port (Prometheus file-based SD)."""
        return self.temp_dir / "prom_metrics_service_discovery.json"

    def env(self) -> dict[str, str]:
        """Environment for the head and for clients of it: token auth on, the venv first on PATH."""
        env = dict(os.environ)
        env["RAY_AUTH_MODE"] = "token"
        env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
        env.pop("RAY_ADDRESS", None)
        # a loaded 2-core machine took over the default 60 s to register the raylet
        env.setdefault("RAY_raylet_start_wait_time_s", "300")
        env.setdefault("RAY_agent_register_timeout_ms", "300000")  # the agents' registration, likewise
        return env

    def start(self, timeout_s: float = 300, attempts: int = 2) -> float:
        """Start the head; returns the seconds it took. Raises RuntimeError with Ray's output on failure.

        A failed start is retried once: Ray 2.60's raylet aborts when the dashboard agent has not written
        its port file within a fixed ~15 s, which happened here on a 2-core machine at a load average of 40.
        """
        t0 = time.monotonic()
        for attempt in range(1, attempts):
            try:
                self._start_once(timeout_s)
                return time.monotonic() - t0
            except RuntimeError as exc:
                self.stop()
                log.warning("ray start --head failed (attempt %d of %d), retrying: %s", attempt, attempts, exc)
                self.ports = {flag: free_port() for flag in PORT_FLAGS}
        try:
            self._start_once(timeout_s)
        except RuntimeError:
            self.stop()
            raise
        return time.monotonic() - t0

    def _start_once(self, timeout_s: float) -> None:
        cmd = [
            str(venv_bin() / "ray"),
            "start",
            "--head",
            f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            f"--temp-dir={self.temp_dir}",
            "--dashboard-host=127.0.0.1",
            "--disable-usage-stats",
            *(f"{flag}={port}" for flag, port in self.ports.items()),
        ]
        # Its own session: every daemon it forks inherits the session id, which is how stop() finds them.
        self._launcher = subprocess.Popen(
            cmd, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._sid = self._launcher.pid
        try:
            out, _ = self._launcher.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"ray start --head did not finish in {timeout_s} s") from None
        if self._launcher.returncode != 0:
            raise RuntimeError(f"ray start --head failed:\n{out.decode(errors='replace')[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        """Every live process of this head: its session, its temp dir in the command line, descendants."""
        marker = str(self.temp_dir)
        roots: list[psutil.Process] = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if (self._sid is not None and os.getsid(p.pid) == self._sid) or any(
                    marker in a for a in p.info["cmdline"] or []
                ):
                    roots.append(p)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        found = {p.pid: p for p in roots}
        for p in roots:
            try:
                found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self, timeout_s: float = 5) -> float:
        """SIGTERM every process of this head, SIGKILL what is left after ``timeout_s``; returns seconds."""
        t0 = time.monotonic()
        procs = self.processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for p in alive:
            try:
                log.warning("Ray process %s (%s) ignored SIGTERM: killed", p.pid, p.name())
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        return time.monotonic() - t0

    def __enter__(self) -> LocalHead:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
