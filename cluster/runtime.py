"""Starting or attaching to Ray the same way from the CLI, the live app, tests and `ray job submit`.

The one home of :func:`init_ray`: both runtimes (``training`` and ``serve``) sit on top of it, so it
lives below them, beside the ``ray up`` configs.
"""

from __future__ import annotations

import logging
import os
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
        ray.init(
            address="local",
            num_cpus=cfg.num_cpus,
            object_store_memory=cfg.object_store_memory_mb * 1024 * 1024,
            include_dashboard=cfg.include_dashboard,
            log_to_driver=log_to_driver,
        )
    return True


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
