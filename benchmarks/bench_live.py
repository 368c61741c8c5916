"""The live path under load, in one run, on a private local Ray instance with the Serve app of
``ray_config.yaml`` (default analysis settings unless ``--config`` says otherwise):

1. **Backbone deployment vs a plain PyTorch loop**: frames/s of the ``Backbone`` deployment fed by
   concurrent requests the size a stream actor sends (the new frames of one stride), against the same
   backbone in a plain ``torch.inference_mode`` loop in this process at the batch size the deployment
   actually formed (same torch threads). Prints the ratio.
2. **Cameras sustained in real time**: 1, 2, 3, ... cameras, each a real-time paced, looped stream of
   ordinary shared CCTV clips (640x360, 25 fps), added through ``POST /v1/cameras``; after a warm-up, a
   level passes when every camera's stream clock kept up with the wall clock (>= 0.97), no window was
   dropped and >= 90 % of the windows due were scored. Stops at the first level that fails.
3. **Alert latency from onset**: cameras whose streams splice shared fight clips between ordinary clips
   at known times (real-time pacing); latency = the start event's ``logged_unix_s`` minus the wall time at
   which the fight's first frame was due (``started_unix_s + onset``); also the stream-time delay
   (``at_s - onset``), the detection rate and alerts outside any fight.

    .venv/bin/python benchmarks/bench_live.py [--levels 1,2,3,4] [--measure-s 30] [--out bench_live.json]

Inputs are composed from ``../shared/data/surveillance-fight`` (or ``$NEXARA_SHARED``) into ``--work``
(default ``runs/bench_live``) and reused on later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")).resolve()
CLIPS = SHARED / "data" / "surveillance-fight"
CAM_HW = (360, 640)
CAM_FPS = 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clips(label: str) -> list[str]:
    import csv

    with open(CLIPS / "clips.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [str(CLIPS / r["clip"]) for r in rows if r["label"] == label]


def _pingpong(path: str, seconds: float) -> list[np.ndarray]:
    """A clip played forward then backward until ``seconds``: a continuous scene with no cut (the shared
    clips are 2-3 s long; looping them would put a cut every 2 s, which real cameras do not have)."""
    from nexara.media import iter_frames

    with iter_frames(path, fps=CAM_FPS, size_hw=CAM_HW) as it:
        fwd = [f.rgb for f in it]
    cycle = fwd + fwd[-2:0:-1]
    n = round(seconds * CAM_FPS)
    return [cycle[i % len(cycle)] for i in range(n)]


def _write(frames: list[np.ndarray], path: Path) -> None:
    from actors.compose import write_video

    tmp = path.with_suffix(".tmp.mp4")
    write_video(frames, tmp, fps=CAM_FPS)
    tmp.rename(path)


def camera_videos(work: Path, count: int, seconds: float) -> list[str]:
    """``count`` looped-camera videos, each an ordinary shared clip played back and forth (cached)."""
    normals = _clips("noFight")
    out = []
    for i in range(count):
        path = work / f"camera-{i}-{CAM_HW[1]}x{CAM_HW[0]}-{CAM_FPS}fps-{seconds:g}s.mp4"
        if not path.exists():
            _write(_pingpong(random.Random(i).choice(normals), seconds), path)
        out.append(str(path))
    return out


def latency_videos(
    work: Path, count: int, fights: int, gap_s: float, fight_s: float
) -> list[tuple[str, list[tuple[float, float]]]]:
    """``count`` videos: an ordinary clip played back and forth for ``gap_s``, then a fight clip played
    back and forth for ``fight_s``, ``fights`` times, then ordinary again. Returns (path, [(onset_s,
    end_s) of each fight])."""
    normals, fight_clips = _clips("noFight"), _clips("fight")
    out = []
    for i in range(count):
        path = work / f"latency-{i}-{fights}x{gap_s:g}+{fight_s:g}s.mp4"
        meta = path.with_suffix(".json")
        if not (path.exists() and meta.exists()):
            rng = random.Random(1000 + i)
            frames: list[np.ndarray] = []
            spans = []
            for f in rng.sample(fight_clips, fights):
                frames += _pingpong(rng.choice(normals), gap_s)
                onset = len(frames) / CAM_FPS
                frames += _pingpong(f, fight_s)
                spans.append((onset, len(frames) / CAM_FPS))
            frames += _pingpong(rng.choice(normals), gap_s)
            _write(frames, path)
            meta.write_text(json.dumps(spans))
        out.append((str(path), [tuple(x) for x in json.loads(meta.read_text())]))
    return out


# --- 1. backbone deployment vs plain loop -----------------------------------------------------------


def real_frames(size_hw: tuple[int, int], n: int) -> np.ndarray:
    from nexara.media import iter_frames

    frames: list[np.ndarray] = []
    for p in _clips("fight")[:20]:
        with iter_frames(p, fps=8, size_hw=size_hw) as it:
            frames += [f.rgb for f in it]
        if len(frames) >= n:
            break
    return np.stack(frames[:n])


def plain_model(cfg: Any) -> Any:
    import torch

    from nexara.backbones import create_backbone

    torch.set_num_threads(cfg.serve.backbone.torch_threads)
    return create_backbone(cfg.model.backbone, weights=cfg.model.weights, device="cpu")


def plain_loop(model: Any, frames: np.ndarray, batch: int, seconds: float) -> float:
    """Frames/s of the backbone called in a plain ``inference_mode`` loop in this process."""
    import torch

    done, i = 0, 0
    with torch.inference_mode():
        model(frames[:batch])  # warm-up
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            idx = [(i + k) % len(frames) for k in range(batch)]
            model(frames[idx])
            done += batch
            i += batch
        return done / (time.perf_counter() - t0)


async def _deployment_rate(
    handle: Any, stats: Any, frames: np.ndarray, per_request: int, clients: int, seconds: float
) -> dict[str, Any]:
    import ray

    chunks = [frames[i : i + per_request] for i in range(0, len(frames) - per_request + 1, per_request)]
    await handle.remote(chunks[0])  # warm-up
    before = await stats.remote()
    stop = time.perf_counter() + seconds
    count = 0

    async def client(k: int) -> None:
        nonlocal count
        j = k
        while time.perf_counter() < stop:
            # a stream actor ships frames through the object store, as here
            await handle.remote(ray.put(chunks[j % len(chunks)]))
            count += per_request
            j += clients

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    after = await stats.remote()
    batches = after["batches"] - before["batches"]
    frames_done = after["frames"] - before["frames"]
    return {
        "frames_per_s": count / wall,
        "mean_batch_frames": frames_done / max(batches, 1),
        "busy_fraction": (after["busy_s"] - before["busy_s"]) / wall,
        "max_batch_size": after["max_batch_size"],
    }


def bench_backbone(cfg: Any, seconds: float, rounds: int = 3) -> dict[str, Any]:
    """Deployment and plain loop measured in alternating rounds (this shared machine's speed drifts by
    tens of percent over minutes; alternating keeps the two under the same conditions)."""
    from ray import serve

    from nexara.model_manifest import read_manifest
    from nexara.voting import DEFAULT_MODEL_DIR

    app = cfg.serve.app_name
    man = read_manifest(Path(cfg.serve.model_dir) if cfg.serve.model_dir else DEFAULT_MODEL_DIR)
    per_request = max(1, round(man.frames_per_clip / cfg.windows.window_s * cfg.windows.stride_s))
    clients = 2 * cfg.serve.backbone.max_batch_size
    frames = real_frames(tuple(man.preprocessing.size_hw), 96)
    handle = serve.get_deployment_handle("Backbone", app_name=app)
    stats = handle.options(method_name="stats")
    model = plain_model(cfg)
    deps, plains, batches, busy = [], [], [], []
    for _ in range(rounds):
        dep = asyncio.run(_deployment_rate(handle, stats, frames, per_request, clients, seconds / rounds))
        batch = max(1, round(dep["mean_batch_frames"]))
        deps.append(dep["frames_per_s"])
        batches.append(dep["mean_batch_frames"])
        busy.append(dep["busy_fraction"])
        plains.append(plain_loop(model, frames, batch, seconds / rounds))
    dep_fps, plain_fps = float(np.median(deps)), float(np.median(plains))
    # why max_batch_size counts frames and defaults to 8: the plain loop by batch size on this machine
    sweep = {b: round(plain_loop(model, frames, b, 4.0), 1) for b in (1, 2, 4, 8, 16, 32, 64)}
    return {
        "frames_per_request": per_request,
        "concurrent_requests": clients,
        "rounds": rounds,
        "deployment_frames_per_s": round(dep_fps, 2),
        "deployment_mean_batch_frames": round(float(np.mean(batches)), 1),
        "deployment_busy_fraction": round(float(np.mean(busy)), 3),
        "plain_batch_frames": max(1, round(float(np.mean(batches)))),
        "plain_frames_per_s": round(plain_fps, 2),
        "ratio": round(dep_fps / plain_fps, 3),
        "ratios_per_round": [round(d / p, 3) for d, p in zip(deps, plains, strict=True)],
        "torch_threads": cfg.serve.backbone.torch_threads,
        "plain_frames_per_s_by_batch": sweep,
    }


# --- HTTP helpers ------------------------------------------------------------------------------------


def _add(client: Any, camera: dict[str, Any]) -> None:
    r = client.post("/v1/cameras", json=camera)
    if r.status_code != 201:
        raise RuntimeError(f"adding camera {camera['id']} failed: {r.status_code} {r.text}")


def _statuses(client: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {i: client.get(f"/v1/cameras/{i}").json() for i in ids}


def _remove_all(client: Any) -> None:
    for cam in client.get("/v1/cameras").json()["cameras"]:
        client.delete(f"/v1/cameras/{cam['source_id']}")


def _events(client: Any, camera_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        r = client.get("/v1/events", params={"camera_id": camera_id, "offset": offset, "limit": 500}).json()
        out += r["events"]
        if r.get("next_offset") is None:
            return out
        offset = r["next_offset"]


# --- 2. cameras sustained ----------------------------------------------------------------------------


def _cell_sum(st: dict[str, Any], key: str) -> int:
    return sum(int(c[key]) for c in st["cells"])


def bench_cameras(
    client: Any, cfg: Any, videos: list[str], levels: list[int], warmup_s: float, measure_s: float
) -> list[dict[str, Any]]:
    results = []
    for n in levels:
        ids = [f"cam{i}" for i in range(n)]
        level: dict[str, Any] = {"cameras": n}
        try:
            for i, cid in enumerate(ids):
                _add(client, {"id": cid, "url": videos[i % len(videos)], "pacing": "realtime", "loop": True})
        except RuntimeError as exc:
            level.update(sustained=False, error=str(exc))
            results.append(level)
            _remove_all(client)
            print(f"  {n} cameras: {exc}", flush=True)
            break
        time.sleep(warmup_s)
        s0, w0 = _statuses(client, ids), time.time()
        time.sleep(measure_s)
        s1, w1 = _statuses(client, ids), time.time()
        wall = w1 - w0
        per = []
        for cid in ids:
            a, b = s0[cid], s1[cid]
            lag = [w1 - b["started_unix_s"] - c["last_window_end_s"] for c in b["cells"] if c["last_window_end_s"]]
            per.append(
                {
                    "camera": cid,
                    "clock_ratio": (b["stream_time_s"] - a["stream_time_s"]) / wall,
                    "windows_scored": _cell_sum(b, "windows_scored") - _cell_sum(a, "windows_scored"),
                    "windows_made": _cell_sum(b, "windows_made") - _cell_sum(a, "windows_made"),
                    "windows_due": wall / cfg.windows.stride_s,
                    "windows_dropped": _cell_sum(b, "windows_dropped") - _cell_sum(a, "windows_dropped"),
                    "windows_failed": _cell_sum(b, "windows_failed") - _cell_sum(a, "windows_failed"),
                    "verdict_lag_s": max(lag) if lag else float("inf"),
                    "fps_in": b.get("fps_in"),
                    "alerts": _cell_sum(b, "alerts"),
                }
            )
        # real time: the stream clock kept pace, every window due was made and scored (none dropped or
        # failed), and the latest verdict is about for the window that just ended (lag < window + 2 strides)
        max_lag = cfg.windows.window_s + 2 * cfg.windows.stride_s
        ok = all(
            p["clock_ratio"] >= 0.97 and p["windows_dropped"] == 0 and p["windows_failed"] == 0
            and p["windows_scored"] >= 0.9 * p["windows_due"] and p["verdict_lag_s"] <= max_lag
            for p in per
        )  # fmt: skip
        level.update(
            sustained=ok,
            wall_s=round(wall, 1),
            min_clock_ratio=round(min(p["clock_ratio"] for p in per), 3),
            windows_made=sum(p["windows_made"] for p in per),
            windows_scored=sum(p["windows_scored"] for p in per),
            windows_due=round(sum(p["windows_due"] for p in per), 1),
            windows_dropped=sum(p["windows_dropped"] for p in per),
            max_verdict_lag_s=round(max(p["verdict_lag_s"] for p in per), 2),
            alerts_on_ordinary_footage=sum(p["alerts"] for p in per),
            load_avg_1m=round(os.getloadavg()[0], 2),
        )
        results.append(level)
        print(
            f"  {n} cameras: sustained={ok} clock ratio min {level['min_clock_ratio']}, windows made "
            f"{level['windows_made']} scored {level['windows_scored']} of {level['windows_due']} due, dropped "
            f"{level['windows_dropped']}, verdict lag max {level['max_verdict_lag_s']} s, alerts "
            f"{level['alerts_on_ordinary_footage']}, load {level['load_avg_1m']}",
            flush=True,
        )
        _remove_all(client)
        time.sleep(2)
        if not ok:
            break
    return results


# --- 3. alert latency ---------------------------------------------------------------------------------


def bench_latency(client: Any, cfg: Any, videos: list[tuple[str, list[tuple[float, float]]]]) -> dict[str, Any]:
    ids = [f"lat{i}" for i in range(len(videos))]
    for cid, (path, _) in zip(ids, videos, strict=True):
        _add(client, {"id": cid, "url": path, "pacing": "realtime"})
    deadline = time.monotonic() + max(spans[-1][1] for _, spans in videos) + 120
    while time.monotonic() < deadline:
        st = _statuses(client, ids)
        if all(s["state"] in ("ended", "failed") for s in st.values()):
            break
        time.sleep(1.0)
    st = _statuses(client, ids)
    wall_lat, stream_lat, missed, false_alarms, onsets = [], [], 0, 0, 0
    for cid, (_, spans) in zip(ids, videos, strict=True):
        started = st[cid]["started_unix_s"]
        starts = [e for e in _events(client, cid) if e["kind"] == "start"]
        used: set[str] = set()
        for onset, end in spans:
            onsets += 1
            hit = next((e for e in starts if onset <= e["at_s"] <= end + 15.0 and e["event_id"] not in used), None)
            if hit is None:
                missed += 1
                continue
            used.add(hit["event_id"])
            stream_lat.append(hit["at_s"] - onset)
            wall_lat.append(hit["logged_unix_s"] - (started + onset))
        false_alarms += sum(1 for e in starts if e["event_id"] not in used)
    _remove_all(client)

    def pct(xs: list[float], q: float) -> float | None:
        if not xs:
            return None
        return round(float(np.percentile(xs, q)), 2)

    return {
        "cameras": len(videos),
        "onsets": onsets,
        "detected": onsets - missed,
        "alerts_outside_fights": false_alarms,
        "latency_wall_p50_s": pct(wall_lat, 50),
        "latency_wall_p95_s": pct(wall_lat, 95),
        "latency_stream_p50_s": pct(stream_lat, 50),
        "latency_stream_p95_s": pct(stream_lat, 95),
        "latencies_wall_s": [round(x, 2) for x in wall_lat],
        "states": {cid: s["state"] for cid, s in st.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench_live"))
    ap.add_argument("--levels", default="1,2,3,4,5,6")
    ap.add_argument("--warmup-s", type=float, default=15.0)
    ap.add_argument("--measure-s", type=float, default=30.0)
    ap.add_argument("--backbone-s", type=float, default=60.0, help="seconds of each side, over 3 rounds")
    ap.add_argument("--latency-cameras", type=int, default=0, help="default: the sustained count (at most 3)")
    ap.add_argument("--fights", type=int, default=6, help="fight clips spliced per latency camera")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: backbone,cameras,latency")
    ap.add_argument("--out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (CLIPS / "clips.csv").is_file():
        sys.exit(f"shared clips not found at {CLIPS} (set NEXARA_SHARED)")
    skip = set(filter(None, args.skip.split(",")))

    import httpx
    from ray import serve

    from cluster.runtime import init_ray
    from nexara.config import load_config
    from serve.builder import run_local

    work = Path(args.work).resolve()  # the source policy takes absolute paths only
    work.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",")]
    t0 = time.perf_counter()
    cams = camera_videos(work, max(levels), 60.0) if "cameras" not in skip else []
    lat_videos = latency_videos(work, 3, args.fights, 16.0, 6.0) if "latency" not in skip else []
    print(f"inputs ready in {time.perf_counter() - t0:.0f} s ({work})", flush=True)

    base = load_config(args.config)
    token = secrets.token_hex(16)
    os.environ[base.serve.token_env] = token
    init_ray(base.ray, log_to_driver=False)
    port = _free_port()  # one HTTP proxy for every app of this run
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "settings": {
        "window_s": base.windows.window_s, "stride_s": base.windows.stride_s,
        "alert_stride_s": base.windows.alert_stride_s, "pre_alert": base.windows.pre_alert,
        "backbone_max_batch_size_frames": base.serve.backbone.max_batch_size,
        "stream_num_cpus": base.serve.stream_num_cpus, "camera": f"{CAM_HW[1]}x{CAM_HW[0]} {CAM_FPS} fps",
    }}  # fmt: skip

    def start_app(name: str, windows: dict[str, Any]) -> tuple[Any, Any]:
        cfg = base.model_copy(
            update={
                "serve": base.serve.model_copy(
                    update={
                        "port": port,
                        "app_name": name,
                        # the cameras are files this benchmark composed: allow their folder over HTTP
                        "source_policy": base.serve.source_policy.model_copy(update={"file_roots": [str(work)]}),
                    }
                ),
                "windows": base.windows.model_copy(update=windows),
                "sinks": base.sinks.model_copy(
                    update={"run_dir": str(work / "runs"), "webhook": None, "console": False}
                ),
            }
        )
        run_dir = work / "runs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        run_local(cfg, run_dir)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{cfg.serve.port}{cfg.serve.route_prefix.rstrip('/')}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        return cfg, client

    def stop_app(cfg: Any, client: Any) -> None:
        import ray

        from actors.stream_actor import get_manager

        client.close()
        serve.delete(cfg.serve.app_name)
        try:
            ray.kill(get_manager(cfg.serve.app_name))
        except ValueError:
            pass

    # Adaptive sampling makes a camera's cost depend on its scores: measure both ends.
    regimes = {
        "quiet": {"alert_stride_s": base.windows.stride_s},  # every window at stride_s
        "hot": {"pre_alert": 0.0},  # every window at alert_stride_s (as while an incident is on)
    }
    sustained: dict[str, int] = {}
    try:
        if "cameras" not in skip:
            result["cameras"] = {}
            for regime, windows in regimes.items():
                print(f"2. cameras sustained in real time, {regime} ({windows}) ...", flush=True)
                cfg, client = start_app(f"bench-{regime}", windows)
                try:
                    out = bench_cameras(client, cfg, cams, levels, args.warmup_s, args.measure_s)
                finally:
                    stop_app(cfg, client)
                sustained[regime] = max((lv["cameras"] for lv in out if lv["sustained"]), default=0)
                result["cameras"][regime] = {"levels": out, "sustained": sustained[regime]}
                print(f"  sustained ({regime}): {sustained[regime]} camera(s)", flush=True)
        if "backbone" in skip and "latency" in skip:
            return
        cfg, client = start_app("bench", {})
        try:
            if "backbone" not in skip:
                print("1. backbone deployment vs plain PyTorch loop ...", flush=True)
                result["backbone"] = bb = bench_backbone(cfg, args.backbone_s)
                print(
                    f"  deployment {bb['deployment_frames_per_s']} frames/s (requests of {bb['frames_per_request']} "
                    f"frames, mean batch {bb['deployment_mean_batch_frames']} frames) vs plain loop "
                    f"{bb['plain_frames_per_s']} frames/s at batch {bb['plain_batch_frames']} (medians of "
                    f"{bb['rounds']} alternating rounds): ratio {bb['ratio']} (rounds {bb['ratios_per_round']})",
                    flush=True,
                )
                print(f"  plain loop frames/s by batch size: {bb['plain_frames_per_s_by_batch']}", flush=True)
            if "latency" not in skip:
                n = args.latency_cameras or max(1, min(3, sustained.get("hot", 1)))
                print(f"3. alert latency on {n} camera(s) x {args.fights} spliced fights ...", flush=True)
                result["latency"] = lat = bench_latency(client, cfg, lat_videos[:n])
                print(
                    f"  detected {lat['detected']}/{lat['onsets']} onsets, alerts outside fights "
                    f"{lat['alerts_outside_fights']}; latency from onset (wall) p50 {lat['latency_wall_p50_s']} s, "
                    f"p95 {lat['latency_wall_p95_s']} s; (stream time) p50 {lat['latency_stream_p50_s']} s, "
                    f"p95 {lat['latency_stream_p95_s']} s",
                    flush=True,
                )
        finally:
            stop_app(cfg, client)
    finally:
        serve.shutdown()
        print(json.dumps(result, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
