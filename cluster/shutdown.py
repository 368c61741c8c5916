"""Graceful stop of a long-running driver (``nexara serve``, ``nexara watch``) on SIGTERM or SIGINT.

What systemd and ``docker stop`` send is SIGTERM; Ray's driver handler turns it into ``sys.exit`` at
whatever line the main thread is on, and a private Ray instance torn down that way left its dashboard
and runtime-env agents running, re-parented to init. Here a signal only *requests* the stop: the main
loop sees :attr:`GracefulStop.requested`, stops the streams, and :func:`shutdown_local_ray` then shuts
Ray down and ends whatever the driver's process tree still holds. A watchdog bounds the whole stop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType, TracebackType

import psutil

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """While active, SIGTERM and SIGINT set :attr:`requested` instead of interrupting the main thread.

    Install it after ``ray.init`` (which installs its own SIGTERM handler). ``deadline_s`` bounds the
    stop: once a signal has arrived, a watchdog thread ends the driver's process tree and exits with
    status 1 if the process is still alive ``deadline_s`` later (a hung teardown never outlives it).
    """

    def __init__(self, deadline_s: float = 60.0) -> None:
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self.deadline_s = deadline_s
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            log.warning("%s again: already stopping (at most %.0f s)", name, self.deadline_s)
            return
        self.signal_name = name
        self.requested.set()
        log.warning("%s received: stopping the streams, then Ray", name)
        threading.Thread(target=self._watchdog, name="stop-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        time.sleep(self.deadline_s)
        log.error("stop took longer than %.0f s: ending the process tree", self.deadline_s)
        end_process_tree(children_of_self(), grace_s=2.0)
        os._exit(1)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Sleep until a stop is requested (True) or ``timeout_s`` passes (False)."""
        return self.requested.wait(timeout_s)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed from the main thread")
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()


def children_of_self() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def end_process_tree(procs: list[psutil.Process], *, grace_s: float) -> list[int]:
    """SIGTERM the still-running ``procs``, SIGKILL those alive after ``grace_s``; returns the PIDs that
    had to be ended (what a clean shutdown should have stopped by itself)."""
    alive = [p for p in procs if _running(p)]
    for p in alive:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, stubborn = psutil.wait_procs(alive, timeout=grace_s)
    for p in stubborn:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(stubborn, timeout=2.0)
    return [p.pid for p in alive]


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def shutdown_local_ray(*, started_here: bool, wait_s: float = 10.0) -> None:
    """``ray.shutdown()``; when this process started the instance, also end any process of it that is
    still alive ``wait_s`` later (Ray's agents outlived their raylet before). An attached driver leaves
    the cluster alone."""
    import ray

    tree = children_of_self() if started_here else []
    ray.shutdown()
    if not tree:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(_running(p) for p in tree):
        time.sleep(0.2)
    left = end_process_tree(tree, grace_s=3.0)
    if left:
        log.warning("ended %d Ray process(es) that outlived ray.shutdown(): %s", len(left), left)
