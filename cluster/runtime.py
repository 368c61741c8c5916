"""Starting or attaching to Ray the same way from the CLI, the live app, tests and `ray job submit`.

The one home of :func:`init_ray`: both runtimes (``training`` and ``serve``) sit on top of it, so it
lives below them, beside the ``ray up`` configs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from nexara.config import RayConfig

log = logging.getLogger(__name__)


def init_ray(cfg: RayConfig, *, log_to_driver: bool = True) -> bool:
    """Attach to the cluster a job runs on, or start a private local instance.

    Returns True when this call started Ray (so the caller should shut it down). Inside
    `ray job submit` (RAY_ADDRESS set) or with an explicit address it attaches; with
    ``address: local`` it never attaches to a stray cluster on the host (plain ``ray.init()`` would, and
    hangs on a stale one). ``log_to_driver=False`` keeps worker logs off a console that prints events
    (``nexara watch``, ``nexara serve``).
    """
    if ray.is_initialized():
        return False
    env_address = os.environ.get("RAY_ADDRESS")
    if env_address:
        log.info("attaching to Ray at RAY_ADDRESS=%s", env_address)
        ray.init(address=env_address, log_to_driver=log_to_driver)
    elif cfg.address != "local":
        log.info("attaching to Ray at %s", cfg.address)
        ray.init(address=cfg.address, log_to_driver=log_to_driver)
    else:
        start_local(cfg, log_to_driver=log_to_driver)
    return True


# Ray waits a fixed 30 s for a new raylet to register with the GCS, then gives up with this message. On a
# loaded machine (2 cores, other Ray instances starting) that happens now and then although nothing is wrong.
_STARTUP_TIMEOUT = "timed out during startup"
_RAY_PROCESS_MARKS = ("gcs_server", "raylet", "ray::", "ray/_private", "ray/dashboard", "ray/autoscaler")


def start_local(cfg: RayConfig, *, log_to_driver: bool, attempts: int = 3, backoff_s: float = 2.0) -> None:
    """``ray.init(address="local", ...)``, tried again (up to ``attempts`` times in all) when the new
    node misses Ray's start-up deadline; the processes the failed try left are ended first."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                address="local",
                num_cpus=cfg.num_cpus,
                object_store_memory=cfg.object_store_memory_mb * 1024 * 1024,
                include_dashboard=cfg.include_dashboard,
                log_to_driver=log_to_driver,
            )
            return
        except Exception as exc:
            if _STARTUP_TIMEOUT not in str(exc) or attempt == attempts:
                raise
            log.warning("Ray's local node missed its start-up deadline (try %d of %d); retrying", attempt, attempts)
            _end_started_ray_processes()
            time.sleep(backoff_s * attempt)


def _end_started_ray_processes(grace_s: float = 5.0) -> None:
    """End the Ray processes this process started (its children: GCS, raylet, workers, agents)."""
    import psutil

    with contextlib.suppress(Exception):
        ray.shutdown()
    children = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(mark in " ".join(child.cmdline()) for mark in _RAY_PROCESS_MARKS):
                children.append(child)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


@contextmanager
def ray_session(cfg: RayConfig, *, log_to_driver: bool = True) -> Iterator[None]:
    """Ray for the duration of a block: attached or started by :func:`init_ray`, and shut down after
    only when this block started it."""
    started = init_ray(cfg, log_to_driver=log_to_driver)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
