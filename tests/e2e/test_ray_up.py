"""`ray up -y cluster/local.yaml` for real, against Debian's OpenSSH server on a loopback port.

The head is this machine, reached as a remote node: a throwaway ed25519 key, an sshd of the test's own
(its config, host key and authorized_keys in a temp dir, 127.0.0.1, a free port), and host, user, key and
port given to the config as NEXARA_* environment variables (cluster/render.py fills them in). `ray up`
copies the checkout to a fresh node folder, runs the config's setup (`make setup-node`: the venv from
uv.lock) and starts the head with token auth; `ray job submit` runs `nexara features` and `nexara train` on
shared clips; `ray down` stops it.

`ray down` always runs a bare `ray stop` on the node, which kills every Ray process on the host. So the sshd
(and so the whole "node") runs in its own PID namespace (`unshare --pid --mount`): `ray stop` there sees
only the node's processes. A decoy process named `raylet` outside the namespace proves it: it must survive
`ray down`. The mount namespace gives the node a private copy of ~/.bashrc, where the config's setup puts
the node's venv on the login PATH (how `ray down` finds `ray`), so the host's file is never changed.

Needs root (apt, unshare, mount): `make setup-sshd` installs openssh-server, rsync and netcat when missing.
Run it with `make test-slow` or `.venv/bin/python -m pytest tests/e2e/test_ray_up.py -m slow -s`.
"""

from __future__ import annotations

import ctypes
import getpass
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pyarrow.dataset as pads
import pytest
from manifest_factory import clips_manifest

from cluster.local_head import PORT_FLAGS, auth_token, free_port, venv_bin
from cluster.render import render_file
from nexara.model_manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
# Four fights and four others, each its own source: `nexara train --cv 2` needs sources on both sides.
CLIPS = [f"fight/fi00{i}.mp4" for i in (1, 2, 3, 4)] + [f"noFight/nofi00{i}.mp4" for i in (1, 2, 3, 6)]
TOOLS = ("/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/rsync", "/usr/bin/nc", "/usr/bin/unshare")
# Ray's per-head ports other than the GCS and dashboard ones (which the config names): all free ports, so
# this head cannot collide with another Ray on the host.
_OTHER_PORTS = tuple(f for f in PORT_FLAGS if f not in ("--port", "--dashboard-port"))

_FORWARDED = {
    *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "PIP_INDEX_URL"),
    *("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_NATIVE_TLS"),
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
}
# its own PID namespace (only the node's processes visible to `ray stop`) and mount namespace (the bashrc)
_UNSHARE = ("unshare", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc", "--propagation", "private")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies (no orphaned sshd)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Node:
    """A "remote" machine on loopback: an sshd in its own PID and mount namespace."""

    port: int
    user: str
    key: Path
    launcher: subprocess.Popen[bytes]
    pid_ns: str
    log: Path

    def processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if os.readlink(f"/proc/{p.pid}/ns/pid") == self.pid_ns:
                    found.append(p)
            except OSError:
                continue
        return found

    def ray_processes(self) -> list[str]:
        names = []
        for p in self.processes():
            try:
                cmd = " ".join(p.cmdline())
                if any(k in p.name() or k in cmd for k in ("raylet", "gcs_server", "ray::", "dashboard.py")):
                    names.append(f"{p.pid} {p.name()}")
            except psutil.Error:
                continue
        return names


def _session_env() -> dict[str, str]:
    """What the node's SSH sessions get besides the login environment: this machine's TLS and proxy
    settings (a real node has its own; `make setup-node` reaches the package index with them) and, since a
    loaded 2-core machine took over Ray's default 60 s to register the raylet, longer start timeouts."""
    env = {k: v for k, v in os.environ.items() if k in _FORWARDED and v and '"' not in v and "\n" not in v}
    env.update({"RAY_raylet_start_wait_time_s": "300", "RAY_agent_register_timeout_ms": "300000"})
    return env


def _ensure_tools() -> None:
    if all(Path(t).exists() for t in TOOLS):
        return
    if os.geteuid() != 0:
        pytest.fail(f"missing {[t for t in TOOLS if not Path(t).exists()]}: run `sudo make setup-sshd`")
    subprocess.run(["make", "setup-sshd"], cwd=REPO, check=True, timeout=900)


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[Node]:
    """sshd -D on 127.0.0.1:<free port> with a throwaway key, inside `unshare --pid --mount`."""
    if os.geteuid() != 0:
        pytest.fail("the ray up test needs root: it starts sshd in its own PID and mount namespace")
    _ensure_tools()
    user = pwd.getpwuid(os.geteuid()).pw_name
    home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
    d = tmp_path / "sshd"
    d.mkdir()
    key = d / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_ed25519")], check=True)
    shutil.copy(d / "id_ed25519.pub", d / "authorized_keys")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    port = free_port()
    (d / "sshd_config").write_text(
        f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / "host_ed25519"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 50
MaxStartups 50
SetEnv {" ".join(f'{k}="{v}"' for k, v in _session_env().items())}
"""
    )
    # The node's private ~/.bashrc (the config's setup appends the venv's PATH to it).
    bashrc = home / ".bashrc"
    bashrc.touch(exist_ok=True)
    shutil.copy(bashrc, d / "bashrc")
    log = d / "sshd.log"
    script = f"mount --bind {d / 'bashrc'} {bashrc} && exec /usr/sbin/sshd -D -e -f {d / 'sshd_config'}"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [*_UNSHARE, "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    try:
        pid_ns = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert launcher.poll() is None, f"sshd exited: {log.read_text()}"
            children = psutil.Process(launcher.pid).children()
            if children:
                pid_ns = os.readlink(f"/proc/{children[0].pid}/ns/pid")
            if pid_ns and pid_ns != os.readlink("/proc/self/ns/pid") and _accepts(port):
                break
            time.sleep(0.2)
        assert pid_ns and _accepts(port), f"sshd not listening on 127.0.0.1:{port}: {log.read_text()}"
        yield Node(port, user, key, launcher, pid_ns, log)
    finally:
        # SIGTERM to unshare; --kill-child then SIGKILLs the namespace's init, and the kernel every process
        # left in the namespace.
        launcher.terminate()
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait(timeout=30)


def _accepts(port: int) -> bool:
    """sshd answers on the port with its banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture()
def manifest(shared_clips: Path, tmp_path: Path) -> Path:
    return clips_manifest(shared_clips, CLIPS, tmp_path)


def _run(cmd: list[str], env: dict[str, str], log: Path, timeout: float, *, secret: bool = False) -> str:
    """Run a `ray` command line from the checkout, its output appended to ``log`` (unless it prints a
    secret); fail with its tail."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    out = proc.stdout + proc.stderr
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}  ({time.monotonic() - t0:.1f} s, rc {proc.returncode})\n")
        f.write("(output not logged)\n" if secret else f"{out}\n")
    tail = proc.stderr[-6000:] if secret else out[-6000:]
    assert proc.returncode == 0, f"{' '.join(cmd[:3])} failed (rc {proc.returncode}):\n{tail}"
    return out


def _wait_job(client: object, job_id: str, timeout_s: float) -> str:
    from ray.job_submission import JobStatus, JobSubmissionClient

    assert isinstance(client, JobSubmissionClient)
    t0 = time.monotonic()
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() - t0 < timeout_s, f"job {job_id} still {status} after {timeout_s} s"
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, f"job {job_id} {status}:\n{logs[-4000:]}"
    return logs


def _forget_cluster(name: str) -> None:
    """Remove what `ray up`/`ray down` keep on the launching machine for the cluster: the local provider's
    state and lock, the config cache (`ray down` has no --no-config-cache), the SSH control-socket dir."""
    for suffix in ("state", "lock"):
        Path(f"/tmp/ray/cluster-{name}.{suffix}").unlink(missing_ok=True)
    for cached in Path(tempfile.gettempdir()).glob("ray-config-*"):
        try:
            if f'"cluster_name": "{name}"' in cached.read_text(errors="replace"):
                cached.unlink()
        except OSError:
            continue
    user_hash = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:10]
    shutil.rmtree(f"/tmp/ray_ssh_{user_hash}/{hashlib.sha256(name.encode()).hexdigest()[:10]}", ignore_errors=True)


def test_ray_up_local_yaml_runs_features_and_train_jobs_then_ray_down(
    node: Node, manifest: Path, tmp_path: Path
) -> None:
    from ray.job_submission import JobSubmissionClient

    home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
    bootstrap_files = [home / "ray_bootstrap_config.yaml", home / "ray_bootstrap_key.pem"]
    created = [p for p in bootstrap_files if not p.exists()]
    name = f"nexara-test-{uuid.uuid4().hex[:8]}"
    node_dir = Path(tempfile.mkdtemp(prefix="nxnode-"))
    temp_dir = Path(tempfile.mkdtemp(prefix="nxu-", dir="/tmp"))  # Ray's socket paths: a short root
    dash_port = free_port()
    start_args = [f"--temp-dir={temp_dir}", "--num-cpus=2", f"--object-store-memory={256 * 1024 * 1024}"]
    start_args += [f"{flag}={free_port()}" for flag in _OTHER_PORTS]
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        {
            "PATH": f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}",
            "RAY_AUTH_MODE": "token",
            "NEXARA_HEAD_IP": "127.0.0.1",
            "NEXARA_SSH_USER": node.user,
            "NEXARA_SSH_KEY": str(node.key),
            "NEXARA_SSH_PORT": str(node.port),
            "NEXARA_CLUSTER_NAME": name,
            "NEXARA_NODE_DIR": str(node_dir),
            "NEXARA_RAY_PORT": str(free_port()),
            "NEXARA_DASHBOARD_PORT": str(dash_port),
            "NEXARA_RAY_START_ARGS": " ".join(start_args),
        }
    )
    config = tmp_path / "local.yaml"
    config.write_text(render_file(REPO / "cluster" / "local.yaml", env))
    log = tmp_path / "ray-up.log"
    ray = str(venv_bin() / "ray")
    # A process that a `ray stop` on this host would kill (it matches Ray's process names): `ray down` must
    # leave it alone.
    decoy_bin = tmp_path / "raylet"
    shutil.copy("/bin/sleep", decoy_bin)
    decoy = subprocess.Popen([str(decoy_bin), "3600"])
    timings: dict[str, float] = {}
    dashboard = f"http://127.0.0.1:{dash_port}"
    try:
        _run([ray, "get-auth-token", "--generate"], env, log, 300, secret=True)
        t0 = time.monotonic()
        _run([ray, "up", "-y", "--no-config-cache", "--log-style", "record", str(config)], env, log, 2400)
        timings["ray up"] = time.monotonic() - t0
        # the node got the checkout without what .gitignore lists, and built its own venv from uv.lock
        assert (node_dir / "uv.lock").read_bytes() == (REPO / "uv.lock").read_bytes()
        assert not (node_dir / ".git").exists() and not (node_dir / "runs").exists()
        assert (node_dir / ".venv" / "bin" / "python").exists()
        assert node.ray_processes(), "no Ray process in the node after ray up"

        # token auth is on: the job API refuses a request without the token
        assert httpx.get(f"{dashboard}/api/jobs/", timeout=30).status_code == 401
        client = JobSubmissionClient(dashboard, headers={"Authorization": f"Bearer {auth_token()}"})
        features = tmp_path / "features"
        model = tmp_path / "model"
        train_cfg = tmp_path / "train.yaml"
        train_cfg.write_text("training:\n  inner_folds: 2   # 8 clips: 2 folds of 4 sources, each split in 2 again\n")
        jobs = {
            "features": ["python", "-m", "nexara.cli", "features", str(manifest), "--out", str(features)],
            "train": [
                *("python", "-m", "nexara.cli", "--config", str(train_cfg), "train", str(features)),
                *("--cv", "2", "--out", str(model), "--version", "ray-up-test"),
            ],
        }
        logs: dict[str, str] = {}
        for job, entrypoint in jobs.items():
            job_id = f"{name}-{job}"
            t0 = time.monotonic()
            submit = [ray, "job", "submit", "--address", dashboard, "--submission-id", job_id, "--no-wait"]
            out = _run([*submit, "--working-dir", ".", "--", *entrypoint], env, log, 600)
            assert job_id in out
            logs[job] = _wait_job(client, job_id, 1800)
            timings[f"{job} job"] = time.monotonic() - t0
            status = _run([ray, "job", "status", "--address", dashboard, job_id], env, log, 300)
            assert "succeeded" in status.lower(), status

        m = re.search(r"(\d+) extracted, 0 already stored, (\d+) failed", logs["features"])
        assert m, logs["features"][-3000:]
        stored = pads.dataset(features).to_table()
        assert stored.num_rows == int(m.group(1)) >= 6
        man = read_manifest(model)
        assert man.version == "ray-up-test" and man.members
        assert man.training_data["clips"] == stored.num_rows
    finally:
        t0 = time.monotonic()
        down = subprocess.run(
            [ray, "down", "-y", "--log-style", "record", str(config)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        timings["ray down"] = time.monotonic() - t0
        with log.open("a") as f:
            f.write(f"$ ray down (rc {down.returncode})\n{down.stdout}{down.stderr}\n")
        left = node.ray_processes()
        decoy_alive = decoy.poll() is None
        decoy.kill()
        decoy.wait()
        for p in created:
            p.unlink(missing_ok=True)
        _forget_cluster(name)
        print(", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    assert down.returncode == 0, down.stdout + down.stderr
    assert left == [], f"Ray processes left in the node after ray down: {left}"
    assert decoy_alive, "ray down's `ray stop` reached a process outside the node"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{dashboard}/api/jobs/", timeout=10)
    shutil.rmtree(node_dir, ignore_errors=True)  # kept only when the test failed
    shutil.rmtree(temp_dir, ignore_errors=True)
