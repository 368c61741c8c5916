"""``nexara watch``: the whole live path on a local Ray instance (Serve app + stream actors), events
printed as they are logged, a per-camera summary at the end, everything written to a run folder."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from nexara.config import CameraConfig, GridConfig, NexaraConfig

if TYPE_CHECKING:
    from actors.records import SourceStatus

logger = logging.getLogger(__name__)


def camera_id_for(source: str, taken: set[str]) -> str:
    stem = Path(source.split("?")[0].rstrip("/")).stem or "camera"
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", stem).strip("-_.")[:48] or "camera"
    if not base[0].isalnum():
        base = "cam-" + base
    cid, n = base, 2
    while cid in taken:
        cid, n = f"{base}-{n}", n + 1
    taken.add(cid)
    return cid


def parse_grid(text: str | None) -> GridConfig:
    if text is None:
        return GridConfig()  # type: ignore[call-arg]
    if text == "auto":
        return GridConfig(mode="auto")  # type: ignore[call-arg]
    m = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not m:
        raise ValueError(f"--grid must be RxC (e.g. 2x2) or auto, got {text!r}")
    return GridConfig(rows=int(m.group(1)), cols=int(m.group(2)))  # type: ignore[call-arg]


def cameras_from_sources(sources: list[str], *, grid: str | None, pacing: str, loop: bool) -> list[CameraConfig]:
    taken: set[str] = set()
    return [
        CameraConfig(
            id=camera_id_for(s, taken),
            url=s,
            pacing=pacing,
            loop=loop,
            grid=parse_grid(grid),  # type: ignore[arg-type]
        )
        for s in sources
    ]


def ensure_token(cfg: NexaraConfig, run_dir: Path) -> tuple[str, Path | None]:
    """The API token: from the environment, or a new one saved (mode 600) in the run folder."""
    token = os.environ.get(cfg.serve.token_env)
    if token:
        return token, None
    token = secrets.token_urlsafe(24)
    os.environ[cfg.serve.token_env] = token  # inherited by the Ray workers started below
    path = run_dir / "api_token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, path


def summary(statuses: list[SourceStatus]) -> str:
    head = f"{'camera':<28} {'state':<10} {'fps':>6} {'scored':>7} {'dropped':>7} {'no-sig':>6} {'alerts':>6} {'last p':>7}"  # noqa: E501
    lines = [head, "-" * len(head)]
    for st in statuses:
        for c in st.cells:
            last = "-" if c.last_score is None else f"{c.last_score:.3f}"
            fps = "-" if c.fps_analysed is None else f"{c.fps_analysed:.1f}"
            lines.append(
                f"{c.camera_id:<28} {st.state:<10} {fps:>6} {c.windows_scored:>7} {c.windows_dropped:>7} "
                f"{c.windows_no_signal:>6} {c.alerts:>6} {last:>7}"
            )
        if not st.cells:
            lines.append(f"{st.source_id:<28} {st.state:<10} {'-':>6} (no frames: {st.error})")
        if st.reconnects:
            lines.append(f"  {st.source_id}: {st.reconnects} reconnect(s)")
    return "\n".join(lines)


def stop_cameras(manager: Any, timeout_s: float | None) -> list[SourceStatus]:
    """Stop every camera of the app's manager: queued windows scored, open incidents ended (reason
    ``shutdown``), sinks delivered or dead-lettered, the event log closed. ``timeout_s`` bounds it
    (an empty list and an error logged when it runs out)."""
    import ray
    from ray.exceptions import GetTimeoutError

    try:
        return list(ray.get(manager.stop_all.remote(), timeout=timeout_s))
    except GetTimeoutError:
        logger.error("the cameras did not stop within %.0f s", timeout_s)
        return []


def release_ray(*, started_ray: bool) -> None:
    """After the cameras stopped: a private instance is shut down with everything it started (Serve
    included, so no ``serve.shutdown()`` first: it cost ~8 s); on an attached cluster only the app
    is removed."""
    from ray import serve

    from cluster.shutdown import shutdown_local_ray

    if started_ray:
        shutdown_local_ray(started_here=True)
    else:
        serve.shutdown()


class LogTail:
    """The complete lines appended to a file since the tail was made (or since the last call). When the file
    shrinks (retention compacted the log) it goes on from the new end, so nothing is printed twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> list[bytes]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            self.offset = min(self.offset, os.fstat(f.fileno()).st_size)
            f.seek(self.offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        return [raw for raw in data[:cut].splitlines() if raw.strip()]


def watch(
    cfg: NexaraConfig,
    cameras: list[CameraConfig],
    *,
    run_dir: Path,
    out: TextIO,
    duration_s: float | None = None,
    stop_deadline_s: float | None = None,
) -> int:
    """Run until every source ends (files), ``duration_s`` passes, or (with ``stop_deadline_s``) SIGTERM
    or SIGINT arrives: then the cameras are stopped as at the end, and Ray within ``stop_deadline_s``.
    Returns the exit code (0 on a signal too: a requested stop is a clean end)."""
    import ray

    from actors.event_log import EventRecord, is_review_line
    from actors.sinks import ConsoleSink
    from actors.stream_actor import get_or_create_manager
    from cluster.runtime import init_ray
    from cluster.shutdown import GracefulStop
    from serve.builder import run_local

    if not cameras:
        raise ValueError("nothing to watch: give sources on the command line or cameras: in the config")
    _, token_path = ensure_token(cfg, run_dir)
    out.write(f"run folder: {run_dir}\n")
    if token_path:
        out.write(f"API token ({cfg.serve.token_env}) saved in {token_path}\n")
    out.flush()
    started_ray = init_ray(cfg.ray, log_to_driver=False)
    rc = 0
    manager = None
    # installed after ray.init, which sets its own SIGTERM handler (sys.exit wherever the main thread is)
    with GracefulStop(stop_deadline_s) if stop_deadline_s is not None else contextlib.nullcontext() as stop:
        try:
            run_local(cfg, run_dir)
            out.write(f"serving on http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix}\n")
            out.flush()
            log_path = run_dir / cfg.sinks.event_log
            tail = LogTail(log_path)  # from the log's end now: an earlier run's events in this folder are not news
            manager = get_or_create_manager(cfg.model_dump(mode="json"), str(run_dir), cfg.serve.app_name)
            started = 0
            for cam in cameras:
                if stop is not None and stop.requested.is_set():
                    break
                try:
                    ray.get(manager.add.remote(cam.model_dump(mode="json"), persist=False))
                    started += 1
                    out.write(f"watching {cam.id}: {cam.url}\n")
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    out.write(f"camera {cam.id} not started: {cause}\n")
                    rc = 1
            out.flush()
            if not started:
                return 0 if stop is not None and stop.requested.is_set() else 2
            console = ConsoleSink(stream=out) if cfg.sinks.console else None
            t_end = None if duration_s is None else time.monotonic() + duration_s

            def drain() -> None:
                for raw in tail.new_lines():
                    if console is not None and not is_review_line(raw):
                        try:
                            console.submit(EventRecord.model_validate_json(raw).model_dump(mode="json"))
                        except Exception:
                            logger.warning("unreadable event log line skipped")
                out.flush()

            while True:
                done = ray.get(manager.wait_all.remote(0.5))
                drain()
                if stop is not None and stop.requested.is_set():
                    out.write(f"{stop.signal_name}: stopping the cameras\n")
                    out.flush()
                    break
                if done or (t_end is not None and time.monotonic() >= t_end):
                    break
            # most of the stop deadline goes to the cameras (incidents, sinks); the rest to Ray
            statuses = stop_cameras(manager, None if stop_deadline_s is None else 0.6 * stop_deadline_s)
            drain()
            out.write("\n" + summary(statuses) + "\n")
            if any(st.state == "failed" for st in statuses):
                rc = 1
            out.write(f"event log: {log_path}\nrun folder: {run_dir}\n")
            out.flush()
            return rc
        finally:
            try:
                if manager is not None:
                    ray.kill(manager)
            finally:
                release_ray(started_ray=started_ray)
