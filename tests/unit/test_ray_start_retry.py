"""`init_ray` starting a private instance tries again when Ray's new node misses its fixed 30-s start-up
deadline (seen on this 2-core machine under load), after ending what the failed try left running.

Ray's deadline cannot be made to expire on demand, so ``ray.init`` is replaced by a stand-in that fails the
way Ray does (its exact message); the clean-up runs against real child processes."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from cluster import runtime
from nexara.config import RayConfig

pytestmark = pytest.mark.unit

RAY_TIMEOUT = (
    "The current node timed out during startup. This could happen because some of the raylet failed to "
    "startup or the GCS has become overloaded."
)


class _FlakyInit:
    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.error, self.calls = failures, error, []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if len(self.calls) <= self.failures:
            raise self.error or Exception(RAY_TIMEOUT)


@pytest.fixture()
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ended: list[str] = []
    monkeypatch.setattr(runtime.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(runtime, "_end_started_ray_processes", lambda: ended.append("ended"))
    monkeypatch.setattr(runtime.time, "sleep", lambda s: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return ended


def test_a_missed_startup_deadline_is_retried(monkeypatch: pytest.MonkeyPatch, no_ray: list[str]) -> None:
    init = _FlakyInit(failures=2)
    monkeypatch.setattr(runtime.ray, "init", init)
    assert runtime.init_ray(RayConfig(num_cpus=2)) is True
    assert len(init.calls) == 3 and no_ray == ["ended", "ended"]
    assert all(c["address"] == "local" and c["num_cpus"] == 2 for c in init.calls)


def test_other_errors_and_the_last_timeout_are_raised(monkeypatch: pytest.MonkeyPatch, no_ray: list[str]) -> None:
    init = _FlakyInit(failures=1, error=ValueError("object_store_memory is too small"))
    monkeypatch.setattr(runtime.ray, "init", init)
    with pytest.raises(ValueError, match="too small"):
        runtime.init_ray(RayConfig())
    assert len(init.calls) == 1 and no_ray == []

    init = _FlakyInit(failures=5)
    monkeypatch.setattr(runtime.ray, "init", init)
    with pytest.raises(Exception, match="timed out during startup"):
        runtime.init_ray(RayConfig())
    assert len(init.calls) == 3


def test_clean_up_ends_only_ray_children() -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    raylet = subprocess.Popen([*sleeper, "/tmp/ray/session_x/sockets/raylet"])
    other = subprocess.Popen([*sleeper, "not-ray"])
    try:
        time.sleep(0.5)
        runtime._end_started_ray_processes(grace_s=5)
        assert raylet.wait(timeout=10) is not None
        assert other.poll() is None
    finally:
        for p in (raylet, other):
            p.kill()
            p.wait()
