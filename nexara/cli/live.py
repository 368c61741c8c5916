"""``nexara serve`` (the Serve app alone, or ``serve build`` of its Serve config) and ``nexara watch``
(the app plus stream actors on the given sources, events printed as they happen)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nexara.cli.config import load_cfg


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = load_cfg(args)
    if args.action == "build":
        import yaml

        from serve.builder import serve_config

        text = yaml.safe_dump(serve_config(cfg, config_path=args.config, run_dir=args.run_dir), sort_keys=False)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            sys.stderr.write(f"wrote {args.out}: deploy with `serve deploy {args.out}`\n")
        else:
            sys.stdout.write(text)
        return 0
    import ray

    from actors.stream_actor import get_manager
    from cluster.runtime import init_ray
    from cluster.shutdown import GracefulStop
    from serve.builder import latest_run_with_cameras, new_run_dir, run_local
    from serve.watch import ensure_token, release_ray, stop_cameras, summary

    kept = latest_run_with_cameras(cfg) if not args.run_dir else None
    if args.resume:
        if kept is None:
            sys.stderr.write(
                f"nexara serve --resume: no run folder under {cfg.sinks.run_dir} keeps cameras added over the API "
                "(cameras.json); start without --resume, or name the folder with --run-dir\n"
            )
            return 2
        args.run_dir = str(kept)
    elif kept is not None:
        sys.stdout.write(
            f"note: {kept} keeps cameras added over the API; they are not started in a new run folder. "
            f"`nexara serve --resume` (or --run-dir {kept}) serves on it again and restores them\n"
        )
    run_dir = Path(args.run_dir).resolve() if args.run_dir else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.port is not None:
        cfg.serve.port = args.port
    _, token_path = ensure_token(cfg, run_dir)
    started_ray = init_ray(cfg.ray, log_to_driver=False)
    # installed after ray.init, which sets its own SIGTERM handler (sys.exit wherever the main thread is)
    with GracefulStop(args.stop_timeout) as stop:
        try:
            run_local(cfg, run_dir)
            sys.stdout.write(
                f"serving on http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix} (run folder {run_dir})\n"
            )
            if token_path:
                sys.stdout.write(f"API token ({cfg.serve.token_env}) saved in {token_path}\n")
            sys.stdout.flush()
            stop.wait()
            sys.stdout.write(f"{stop.signal_name}: stopping the cameras\n")
            sys.stdout.flush()
            try:
                manager = get_manager(cfg.serve.app_name)
            except ValueError:  # no camera was ever added
                manager = None
            if manager is not None:
                statuses = stop_cameras(manager, 0.6 * args.stop_timeout)
                sys.stdout.write(summary(statuses) + "\n")
                ray.kill(manager)
        finally:
            release_ray(started_ray=started_ray)
    sys.stdout.write(f"stopped (event log in {run_dir})\n")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from serve.builder import new_run_dir
    from serve.watch import cameras_from_sources, watch

    cfg = load_cfg(args)
    if args.port is not None:
        cfg.serve.port = args.port
    try:
        cameras = (
            cameras_from_sources(args.sources, grid=args.grid, pacing=args.pacing, loop=args.loop)
            if args.sources
            else list(cfg.cameras)
        )
    except ValueError as exc:
        sys.stderr.write(f"nexara: error: {exc}\n")
        return 2
    for src in args.sources:
        if "://" not in src and not Path(src).exists():
            sys.stderr.write(f"nexara: error: source not found: {src}\n")
            return 2
    run_dir = Path(args.run_dir).resolve() if args.run_dir else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    return watch(
        cfg, cameras, run_dir=run_dir, out=sys.stdout, duration_s=args.duration, stop_deadline_s=args.stop_timeout
    )


_STOP_HELP = (
    "on SIGTERM/SIGINT: seconds to stop the cameras (open incidents ended, sinks flushed) and Ray before "
    "the process tree is killed (default 60; give `docker stop -t` / systemd TimeoutStopSec more)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sv = sub.add_parser("serve", help="run the Serve app locally, or `serve build` its Serve config")
    sv.add_argument("action", nargs="?", choices=["run", "build"], default="run")
    sv.add_argument("--out", help="build: write the Serve config here (default stdout)")
    sv.add_argument("--run-dir", help="folder for the event log and clips (default: sinks.run_dir/<timestamp>)")
    sv.add_argument(
        "--resume",
        action="store_true",
        help="serve on the newest run folder that keeps cameras added over the API, restoring them",
    )
    sv.add_argument("--port", type=int, help="override serve.port")
    sv.add_argument("--stop-timeout", type=float, default=60.0, help=_STOP_HELP)
    sv.set_defaults(func=cmd_serve)

    w = sub.add_parser("watch", help="live detection on files, URLs or screen recordings; events as they happen")
    w.add_argument("sources", nargs="*", help="files or URLs (default: cameras: in the config)")
    w.add_argument("--grid", help="RxC (e.g. 2x2) or auto: each source is a monitor wall")
    w.add_argument(
        "--pacing", choices=["realtime", "fast"], default="realtime", help="files: real time or as fast as possible"
    )
    w.add_argument("--loop", action="store_true", help="files: loop forever (stop with --duration or Ctrl-C)")
    w.add_argument("--duration", type=float, help="stop after this many seconds")
    w.add_argument("--run-dir", help="run folder (default: sinks.run_dir/<timestamp>)")
    w.add_argument("--port", type=int, help="override serve.port")
    w.add_argument("--stop-timeout", type=float, default=60.0, help=_STOP_HELP)
    w.set_defaults(func=cmd_watch)
