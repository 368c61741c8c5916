"""The cross-process rule for rewriting an event log that others append to.

Several processes append to one run's event log (every stream actor its events, the HTTP ingress the
reviews), each through its own ``O_APPEND`` descriptor. Retention compacts the log by writing a new
file and ``os.replace``-ing it over the old one (atomic: a crash leaves the old or the new log, never
half of one). Two things keep appends from being lost:

- an advisory ``flock`` on a sidecar ``<log>.lock``: appenders hold it *shared* around each write
  (they never wait for each other), the compaction holds it *exclusive* from reading the old file to
  the replace, so no line is appended in between;
- an appender, once it holds the lock, checks that its descriptor still refers to the file at the
  log's path (:func:`reopen_if_replaced`) and reopens it if the log was replaced; otherwise it would
  keep appending to the unlinked old file.

Pure file I/O (``fcntl``, so POSIX only): no Ray.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["APPEND_FLAGS", "lock_path", "log_lock", "reopen_if_replaced"]

APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def lock_path(log_path: str | os.PathLike[str]) -> Path:
    p = Path(log_path)
    return p.with_name(p.name + ".lock")


@contextmanager
def log_lock(log_path: str | os.PathLike[str], *, exclusive: bool) -> Iterator[None]:
    """Hold the log's sidecar lock: shared to append, exclusive to rewrite."""
    fd = os.open(lock_path(log_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases its flock


def reopen_if_replaced(fd: int, log_path: str | os.PathLike[str]) -> int:
    """``fd`` when it still refers to the file at ``log_path``, else a new append descriptor for it (the
    old one is closed). Call it while holding :func:`log_lock`."""
    try:
        on_disk = os.stat(log_path)
    except FileNotFoundError:
        on_disk = None
    mine = os.fstat(fd)
    if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino):
        return fd
    new_fd = os.open(log_path, APPEND_FLAGS, 0o644)
    os.close(fd)
    return new_fd
