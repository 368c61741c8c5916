"""Ray's token auth stays on (SECURITY.md): the dashboard and the job API refuse a request without the
token and accept it with the token. Runs its own Ray instance in a child process (with the dashboard,
which the session's shared instance leaves out), so it never touches another test's Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

_PROBE = r"""
import json, os, socket, httpx, ray

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
ctx = ray.init(address="local", num_cpus=1, object_store_memory=128 * 1024 * 1024,
               include_dashboard=True, dashboard_port=port, log_to_driver=False)
base = "http://" + ctx.dashboard_url
token = open(os.path.expanduser("~/.ray/auth_token")).read().strip()
auth = {"Authorization": "Bearer " + token}
out = {"host": ctx.dashboard_url.rsplit(":", 1)[0]}
for name, method, path, body in [
    ("version", "GET", "/api/version", None),
    ("jobs", "GET", "/api/jobs/", None),
    ("submit", "POST", "/api/jobs/", {"entrypoint": "echo hi"}),
    ("actors", "GET", "/api/v0/actors", None),
]:
    out[name] = httpx.request(method, base + path, json=body, timeout=30).status_code
    out[name + "_wrong"] = httpx.request(method, base + path, json=body, timeout=30,
                                         headers={"Authorization": "Bearer not-the-token"}).status_code
out["jobs_with_token"] = httpx.get(base + "/api/jobs/", headers=auth, timeout=30).status_code
ray.shutdown()
print("PROBE " + json.dumps(out))
"""


def test_dashboard_and_job_api_refuse_requests_without_the_token(tmp_path: Path) -> None:
    if not (Path.home() / ".ray" / "auth_token").is_file():
        pytest.skip("no Ray auth token on this machine (~/.ray/auth_token)")
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(line[len("PROBE ") :])
    assert out["host"] == "127.0.0.1"  # the dashboard binds loopback unless told otherwise
    for name in ("version", "jobs", "submit", "actors"):
        assert out[name] == 401, out
        assert out[name + "_wrong"] in (401, 403), out
    assert out["jobs_with_token"] == 200, out
