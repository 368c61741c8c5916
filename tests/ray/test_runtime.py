"""The one `init_ray`: attaches to the cluster `RAY_ADDRESS` names (what `ray job submit` sets), and
without it starts a private instance even when another one runs on the host (a stray cluster is never
joined by accident). Both against real Ray: the session's private instance plays the cluster, a
subprocess plays the job's driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]

_DRIVER = """
import json
import ray
from cluster.runtime import init_ray
from nexara.config import RayConfig
started = init_ray(RayConfig(num_cpus=1, object_store_memory_mb=128))
again = init_ray(RayConfig())
print("RESULT", json.dumps({"started": started, "again": again, "gcs": ray.get_runtime_context().gcs_address}))
ray.shutdown()
"""


def _driver(env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER], capture_output=True, text=True, cwd=REPO, env=env, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def _cluster_address() -> str:
    import ray

    return str(ray.get_runtime_context().gcs_address)


def test_ray_address_is_honoured() -> None:
    cluster = _cluster_address()
    got = _driver({**os.environ, "RAY_ADDRESS": cluster})
    assert got == {"started": True, "again": False, "gcs": cluster}


def test_without_ray_address_a_private_instance_starts_beside_a_running_one() -> None:
    cluster = _cluster_address()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    got = _driver(env)
    assert got["started"] is True and got["again"] is False
    assert got["gcs"] != cluster
