"""Ray actors of the live path: one :class:`StreamActor` per source, owned by one :class:`CameraManager`.

The manager is a named, detached actor (namespace ``nexara``): the HTTP ingress and ``nexara watch`` find
it by name, add and remove cameras at run time, and read their status. Each stream actor scores its
windows through the Serve app's deployment handles (awaited, never ``ray.get`` in async code): the frame
``Backbone`` or, for a model on a clip backbone, ``ClipBackbone`` (whole windows), then ``VotingEnsemble``;
with ``serve.cascade`` the gate member runs in the stream actor first (:mod:`actors.cascade`). Cameras added
over the HTTP API are kept in the run folder (:mod:`actors.camera_store`) and started again by the next
manager on that folder.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors.camera_store import CameraStore, checked_source
from actors.confirmation import EndReason
from actors.quality import QualityMonitor
from actors.records import SourceStatus
from actors.stream import LiveModel, runs_folder, worker_from_config
from nexara.config import ResolvedCamera
from nexara.config.live import CascadeConfig
from nexara.errors import CameraError, ConfigError, SourceNotAllowedError

logger = logging.getLogger(__name__)

NAMESPACE = "nexara"
MANAGER_NAME = "nexara-camera-manager"


@ray.remote
class StreamActor:
    """Runs one source, given the camera resolved by the config schema."""

    def __init__(
        self, camera: ResolvedCamera, run_dir: str, app_name: str, cascade: CascadeConfig | None = None
    ) -> None:
        from nexara.model_manifest import read_manifest
        from nexara.voting import DEFAULT_MODEL_DIR

        logging.basicConfig(level=logging.INFO)
        self.camera = camera
        model_dir = camera.model_dir or str(DEFAULT_MODEL_DIR)
        manifest = read_manifest(model_dir)
        self.model = LiveModel.from_manifest(manifest)
        gate = None
        if cascade is not None and cascade.gate_member is not None:
            from actors.cascade import load_gate

            gate = load_gate(model_dir, manifest, cascade.gate_member, cascade.gate_threshold)
        backbone = "ClipBackbone" if self.model.clip is not None else "Backbone"
        self._backbone = serve.get_deployment_handle(backbone, app_name=app_name)
        self._ensemble = serve.get_deployment_handle("VotingEnsemble", app_name=app_name)
        self.worker = worker_from_config(
            camera,
            run_dir=run_dir,
            model=self.model,
            embed=self._embed,
            vote=self._vote,
            gate=gate,
            model_version=manifest.version,
        )

    async def _embed(self, frames: Any) -> Any:
        return await self._backbone.remote(frames)

    async def _vote(self, feats: Any, motion: Any) -> dict[str, Any]:
        return await self._ensemble.remote(feats, motion)

    async def start(self) -> SourceStatus:
        self.worker.start(asyncio.get_running_loop())
        self._metrics_task = asyncio.create_task(self._publish_metrics())
        return self.worker.status()

    async def _publish_metrics(self, every_s: float = 2.0) -> None:
        """Status -> Prometheus metrics (:mod:`actors.live_metrics`) every ``every_s`` until the end."""
        metrics = LiveMetrics(self.camera.id)
        while True:
            try:
                metrics.update(self.worker.status(), quality=self.worker.quality)
            except Exception as exc:  # metrics never stop a stream
                logger.warning("metrics of %s not published: %s", self.camera.id, exc)
            if self.worker.finished.is_set():
                return
            await asyncio.sleep(every_s)

    async def status(self) -> SourceStatus:
        return self.worker.status()

    async def wait(self, timeout_s: float | None = None) -> bool:
        return await self.worker.wait(timeout_s)

    async def recent_events(self) -> list[dict[str, Any]]:
        return list(self.worker.recent_events)

    async def frame_jpeg(self, camera_id: str) -> bytes | None:
        return await asyncio.to_thread(self.worker.frame_jpeg, camera_id)  # an encode: off the event loop

    async def stop(self, timeout_s: float = 30.0, reason: EndReason = "stream_end") -> SourceStatus:
        self.worker.stop(reason)
        await self.worker.wait(timeout_s)
        await asyncio.get_running_loop().run_in_executor(None, self.worker.close, 10.0)
        return self.worker.status()


@ray.remote(num_cpus=0)
class CameraManager:
    """Owns the stream actors of one Serve app; every method is safe to call concurrently."""

    def __init__(self, settings: dict[str, Any], run_dir: str, app_name: str) -> None:
        self.app_name = app_name
        self.actors: dict[str, Any] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.resolved: dict[str, ResolvedCamera] = {}
        self.restarts: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._restoring: asyncio.Task[dict[str, str | None]] | None = None
        self._settings(settings, run_dir)

    def _settings(self, settings: dict[str, Any], run_dir: str) -> None:
        from actors.retention import RetentionTask
        from nexara.config import NexaraConfig

        self.settings = settings
        self.cfg = NexaraConfig.model_validate(settings)
        self.run_dir = str(Path(run_dir).resolve())
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        root = runs_folder(Path(self.run_dir), self.cfg.sinks.run_dir)
        self.retention = RetentionTask(root, self.cfg.retention, event_log=self.cfg.sinks.event_log)
        self.retention.start()
        # the run folder's kept cameras (HTTP API): running ones by id, and those not (yet) running again with
        # why not (None: being restored); the store holds both, in that order
        self.store = CameraStore.of_run_dir(self.run_dir)
        self.kept: dict[str, dict[str, Any]] = {}
        self.unrestored: dict[str, tuple[dict[str, Any], str | None]] = {}
        if self._restoring is not None:
            self._restoring.cancel()
            self._restoring = None

    async def adopt(self, settings: dict[str, Any], run_dir: str) -> bool:
        """Take a redeployed app's settings and run folder (the manager is detached and outlives its app):
        True once they are in force; False, changing nothing, while cameras run on the old ones."""
        if settings == self.settings and str(Path(run_dir).resolve()) == self.run_dir:
            self._start_restore()
            return True
        async with self._lock:
            if self.actors:
                logger.warning(
                    "camera manager of app %s keeps its settings: cameras %s run on them (remove them, or "
                    "stop the app, for a redeploy's settings to apply)",
                    self.app_name,
                    sorted(self.actors),
                )
                return False
            old = self.retention
            self._settings(settings, run_dir)  # no await before: a call queued after this one sees them
            await asyncio.get_running_loop().run_in_executor(None, old.stop)
            logger.info("camera manager of app %s: new settings, run folder %s", self.app_name, self.run_dir)
            self._start_restore()
            return True

    async def info(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "event_log": str(Path(self.run_dir) / self.cfg.sinks.event_log),
            "app_name": self.app_name,
            "cameras": sorted(self.actors),
            "camera_store": str(self.store.path),
            "kept": sorted(self.kept),
            "unrestored": {cid: err for cid, (_, err) in sorted(self.unrestored.items())},
            "restarts": dict(self.restarts),
            "retention": {"root": str(self.retention.root), "passes": self.retention.passes},
        }

    async def add(self, camera: dict[str, Any], persist: bool | None = None) -> SourceStatus:
        """Start ``camera`` (CameraConfig JSON). ``persist``: keep it in the run folder's camera store, so that
        a later manager on this folder starts it again; by default a camera that carries a ``source_policy``
        (the HTTP API and the console set it) is kept and a config or ``nexara watch`` camera (unset) is not:
        the config starts those again itself."""
        from pydantic import ValidationError

        from nexara.config import CameraConfig, error_key

        try:
            cam = CameraConfig.model_validate(camera)
            resolved = self.cfg.resolve_camera(cam)
        except ValidationError as exc:
            where, msg = error_key(exc.errors()[0])
            raise CameraError("invalid_camera", f"{where or 'camera'}: {msg}") from None
        except ConfigError as exc:
            raise CameraError("invalid_camera", str(exc)) from None
        if "://" not in cam.url and cam.format is None and not Path(cam.url).exists():
            raise CameraError("source_not_found", f"camera {cam.id}: source file not found: {cam.url}")
        keep = cam.source_policy is not None if persist is None else persist
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise())
        async with self._lock:
            if cam.id in self.actors:
                raise CameraError("camera_exists", f"camera {cam.id} already exists; DELETE it first")
            if cam.id in self.unrestored and not keep:
                raise CameraError(
                    "camera_exists", f"camera {cam.id} is kept in {self.store.path} (not running); DELETE it first"
                )
            actor = self._new_actor(resolved)
            timeout = self.cfg.serve.camera_start_timeout_s
            try:
                status = await asyncio.wait_for(actor.start.remote(), timeout)
            except TimeoutError:
                # almost always an actor that cannot be placed: say which resource is short
                ray.kill(actor)
                need = self.cfg.serve.stream_num_cpus
                free = ray.available_resources().get("CPU", 0.0)
                raise CameraError(
                    "no_capacity",
                    f"camera {cam.id} did not start within {timeout:g} s: its stream actor needs "
                    f"serve.stream_num_cpus={need:g} CPU and the cluster has {free:g} free; remove a camera, "
                    "lower serve.stream_num_cpus or add nodes",
                ) from None
            except Exception as exc:
                ray.kill(actor)
                cause = getattr(exc, "cause", None) or exc
                raise CameraError("camera_failed", f"camera {cam.id} could not start: {cause}") from None
            self.actors[cam.id] = actor
            self.configs[cam.id] = cam.model_dump(mode="json")
            self.resolved[cam.id] = resolved
            self.restarts.setdefault(cam.id, 0)
            if keep:
                self.kept[cam.id] = self.configs[cam.id]
                before = self.unrestored.pop(cam.id, None)
                try:
                    await self._save()
                except OSError as exc:  # not kept: not started either (it would be gone after a restart)
                    self.kept.pop(cam.id, None)
                    if before is not None:
                        self.unrestored[cam.id] = before
                    self.actors.pop(cam.id, None)
                    self.configs.pop(cam.id, None)
                    self.resolved.pop(cam.id, None)
                    ray.kill(actor)
                    raise CameraError(
                        "camera_not_saved",
                        f"camera {cam.id} not started: {self.store.path} could not be written: {exc}",
                    ) from None
            return status

    async def _save(self) -> None:
        """The kept cameras (running, then not running) to the store; called holding ``self._lock``."""
        cameras = {**self.kept, **{cid: raw for cid, (raw, _) in self.unrestored.items()}}
        await asyncio.to_thread(self.store.save, cameras)

    def _start_restore(self) -> None:
        if self._restoring is None:
            self._restoring = asyncio.create_task(self._restore())

    async def restore(self) -> dict[str, str | None]:
        """Start the run folder's kept cameras again (once per run folder: :meth:`adopt` starts it, the app's
        deploy) and wait for it: camera id -> None when running, else why not."""
        self._start_restore()
        assert self._restoring is not None
        return await asyncio.shield(self._restoring)

    async def _restore(self) -> dict[str, str | None]:
        """Each kept camera checked as a new HTTP API camera (source policy, schema, source, capacity) and
        started; one that fails stays in the store and is listed as ``failed`` with why, an error logged."""
        store = self.store
        cameras, problems = await asyncio.to_thread(store.load)
        for problem in problems:
            logger.error("camera store: %s", problem)
        async with self._lock:  # listed (state "restoring") and kept in the file while they start
            for cid, raw in cameras.items():
                if cid not in self.actors:
                    self.unrestored.setdefault(cid, (raw, None))
        out: dict[str, str | None] = {}
        for cid, raw in cameras.items():
            if self.unrestored.get(cid) != (raw, None):  # added or removed meanwhile
                out[cid] = None if cid in self.actors else "added or removed while the app started"
                continue
            err: Exception
            try:
                camera = await asyncio.to_thread(checked_source, self.cfg.serve.source_policy, raw)
                await self.add(camera, persist=True)
                logger.info("camera %s restored from %s", cid, store.path)
                out[cid] = None
                continue
            except SourceNotAllowedError as exc:
                logger.error("camera %s kept in %s: the source policy refuses it now: %s", cid, store.path, exc.reason)
                err = CameraError("source_not_allowed", f"camera {cid}: {SourceNotAllowedError.public_message}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = getattr(exc, "cause", None) or exc
            if cid in self.actors:  # started meanwhile by a caller of add()
                out[cid] = None
                continue
            why = f"not restored from {store.path.name}: {err}"
            logger.error(
                "camera %s kept in %s not restored (it stays there; DELETE it to forget it): %s", cid, store.path, err
            )
            async with self._lock:
                if cid in self.unrestored:
                    self.unrestored[cid] = (raw, why)
            out[cid] = why
        if problems:  # the usable cameras to a clean file (the bad one was copied aside)
            async with self._lock:
                try:
                    await self._save()
                except OSError as exc:
                    logger.error("camera store %s not rewritten: %s", store.path, exc)
        return out

    def _unrestored_status(self, camera_id: str, with_config: bool) -> SourceStatus:
        raw, why = self.unrestored[camera_id]
        url = raw.get("url")
        return SourceStatus(
            source_id=camera_id,
            url=url if isinstance(url, str) else "",
            state="restoring" if why is None else "failed",
            error=why,
            fps_in=None,
            frames_in=0,
            stream_time_s=0.0,
            connects=0,
            reconnects=0,
            corrupt_packets=0,
            queued=0,
            in_flight=0,
            started_unix_s=None,
            cells=(),
            config=raw if with_config else None,
        )

    def _new_actor(self, resolved: ResolvedCamera) -> Any:
        return StreamActor.options(  # type: ignore[attr-defined]
            num_cpus=self.cfg.serve.stream_num_cpus, max_concurrency=64
        ).remote(resolved, self.run_dir, self.app_name, self.cfg.serve.cascade)

    async def _supervise(self, every_s: float = 1.0) -> None:
        """A camera whose stream actor died (its process killed, its node lost) gets a new one: the camera
        comes back with its config, closing the incidents the dead one left open (actors/recovery.py)."""
        from ray.exceptions import ActorDiedError

        while True:
            await asyncio.sleep(every_s)
            for camera_id, actor in list(self.actors.items()):
                try:
                    await asyncio.wait_for(actor.status.remote(), 30.0)
                except ActorDiedError:
                    try:
                        await self._restart(camera_id, actor)
                    except Exception as exc:  # tried again at the next round
                        logger.error("camera %s: stream actor not restarted: %s", camera_id, exc)
                except Exception:  # slow or briefly unreachable: not dead
                    continue

    async def _restart(self, camera_id: str, dead: Any) -> None:
        async with self._lock:
            if self.actors.get(camera_id) is not dead:  # removed or restarted meanwhile
                return
            logger.warning("camera %s: its stream actor died; starting a new one", camera_id)
            actor = self._new_actor(self.resolved[camera_id])
            try:
                await asyncio.wait_for(actor.start.remote(), self.cfg.serve.camera_start_timeout_s)
            except BaseException:
                ray.kill(actor)
                raise
            self.actors[camera_id] = actor
            self.restarts[camera_id] = self.restarts.get(camera_id, 0) + 1

    async def remove(self, camera_id: str, reason: EndReason = "removed") -> SourceStatus:
        """Stop ``camera_id`` and forget it: it leaves the store too (one not running is only dropped there)."""
        return await self._stop(camera_id, reason, forget=True)

    async def _stop(self, camera_id: str, reason: EndReason, forget: bool) -> SourceStatus:
        async with self._lock:
            if forget and (camera_id in self.kept or camera_id in self.unrestored):
                self.kept.pop(camera_id, None)
                gone = self._unrestored_status(camera_id, True) if camera_id in self.unrestored else None
                self.unrestored.pop(camera_id, None)
                try:
                    await self._save()
                except OSError as exc:
                    logger.error(
                        "camera %s removed, but %s could not be written (%s): it comes back when an app starts "
                        "on this run folder",
                        camera_id,
                        self.store.path,
                        exc,
                    )
                if gone is not None:
                    return gone
            actor = self.actors.pop(camera_id, None)
            self.configs.pop(camera_id, None)
            self.resolved.pop(camera_id, None)
        if actor is None:
            raise CameraError("camera_not_found", f"no camera {camera_id}")
        try:
            status = await actor.stop.remote(reason=reason)
        finally:
            ray.kill(actor)
        return status

    async def status(self, camera_id: str) -> SourceStatus:
        """The source of ``camera_id`` (a source id or a wall cell id), with that source's config."""
        actor = self.actors.get(camera_id)
        if actor is None:
            for sid, a in self.actors.items():  # a cell id of a monitor wall
                st = await a.status.remote()
                if st.cell(camera_id) is not None:
                    return replace(st, config=self.configs.get(sid))
            if camera_id in self.unrestored:
                return self._unrestored_status(camera_id, True)
            raise CameraError("camera_not_found", f"no camera {camera_id}")
        return replace(await actor.status.remote(), config=self.configs.get(camera_id))

    async def frame_jpeg(self, camera_id: str) -> bytes:
        """The latest analysed picture of ``camera_id`` (a source or a wall cell) as a small JPEG."""
        actor = self.actors.get(camera_id)
        if actor is None:
            for a in list(self.actors.values()):  # a cell id of a monitor wall
                if (await a.status.remote()).cell(camera_id) is not None:
                    actor = a
                    break
        if actor is None:
            raise CameraError("camera_not_found", f"no camera {camera_id}")
        data = await actor.frame_jpeg.remote(camera_id)
        if data is None:
            raise CameraError("not_found", f"camera {camera_id} has no analysed frame yet")
        return data  # type: ignore[no-any-return]

    async def cameras(self) -> list[SourceStatus]:
        """Every camera's status (a camera whose stream actor died is left out until its new one runs), and
        the kept cameras not running (being restored, or failed to: state ``restoring`` or ``failed``)."""
        ids = sorted(self.actors)
        statuses = await asyncio.gather(*(self.actors[i].status.remote() for i in ids), return_exceptions=True)
        out = [s for s in statuses if isinstance(s, SourceStatus)]
        out += [self._unrestored_status(i, False) for i in sorted(self.unrestored) if i not in self.actors]
        return sorted(out, key=lambda s: s.source_id)

    async def wait_all(self, timeout_s: float | None = None) -> bool:
        """True once every source has ended (files), False on timeout (or while a stream actor restarts)."""
        results = await asyncio.gather(
            *(a.wait.remote(timeout_s) for a in self.actors.values()), return_exceptions=True
        )
        return all(r is True for r in results)

    async def stop_all(self) -> list[SourceStatus]:
        """Stop every camera and the retention task (the app's shutdown). The store keeps its cameras: they
        start again with the next app on this run folder."""
        if self._restoring is not None:
            self._restoring.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.retention.stop)
        ids = list(self.actors)
        out = []
        for i in ids:
            try:
                out.append(await self._stop(i, "shutdown", forget=False))
            except Exception as exc:
                logger.error("camera %s did not stop cleanly: %s", i, exc)
        return out


def get_or_create_manager(settings: dict[str, Any], run_dir: str, app_name: str) -> Any:
    """The app's camera manager (created on first use; detached so ingress restarts keep cameras). One left
    by an earlier deploy of the app takes these settings and run folder unless cameras run on its own
    (:meth:`CameraManager.adopt`, awaited: an async actor may run a caller's later calls first)."""
    from ray.exceptions import GetTimeoutError

    manager = CameraManager.options(  # type: ignore[attr-defined]
        name=f"{MANAGER_NAME}-{app_name}", namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings, run_dir, app_name)
    try:
        ray.get(manager.adopt.remote(settings, run_dir), timeout=60)
    except GetTimeoutError:
        logger.warning("camera manager of app %s did not confirm its settings within 60 s", app_name)
    return manager


def get_manager(app_name: str) -> Any:
    return ray.get_actor(f"{MANAGER_NAME}-{app_name}", namespace=NAMESPACE)


class LiveMetrics:
    """Publishes a stream worker's :class:`~actors.records.SourceStatus` as Ray metrics (counters
    advance by the difference since the last update)."""

    def __init__(self, source_id: str) -> None:
        from ray.util.metrics import Counter, Gauge

        from actors.live_metrics import METRICS, QUALITY_METRICS, SOURCE_METRICS, TAG_KEYS

        self.source_id = source_id
        self._metrics: dict[str, Any] = {}
        for name, kind, desc, _ in (*METRICS, *SOURCE_METRICS):
            cls = Counter if kind == "counter" else Gauge
            self._metrics[name] = cls(name, description=desc, tag_keys=TAG_KEYS)
        for name, _, desc in QUALITY_METRICS:
            self._metrics[name] = Gauge(name, description=desc, tag_keys=TAG_KEYS)
        self._last: dict[tuple[str, str], float] = {}

    def _count(self, name: str, camera: str, total: float) -> None:
        key = (name, camera)
        delta = total - self._last.get(key, 0.0)
        self._last[key] = total
        if delta > 0:
            self._metrics[name].inc(delta, tags={"source": self.source_id, "camera": camera})

    def _gauge(self, name: str, camera: str, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        self._metrics[name].set(float(value), tags={"source": self.source_id, "camera": camera})

    def update(
        self, status: SourceStatus, now_unix_s: float | None = None, quality: QualityMonitor | None = None
    ) -> None:
        from actors.live_metrics import METRICS, SOURCE_METRICS

        now = time.time() if now_unix_s is None else now_unix_s
        started = status.started_unix_s
        for cell in status.cells:
            cam = cell.camera_id
            for name, kind, _, field in METRICS:
                if not field:
                    continue
                value = getattr(cell, field)
                if kind == "counter":
                    self._count(name, cam, float(value or 0))
                else:
                    self._gauge(name, cam, None if value is None else float(value))
            self._gauge("nexara_signal_ok", cam, 1.0 if cell.signal == "ok" else 0.0)
            if started is not None and cell.last_window_end_s is not None:
                self._gauge("nexara_verdict_lag_seconds", cam, now - started - cell.last_window_end_s)
            if quality is not None:
                for name, value in quality.gauges(cam):  # a value not known yet is left out
                    self._gauge(name, cam, value)
        src = self.source_id
        for name, kind, _, field in SOURCE_METRICS:
            if not field:
                continue
            value = getattr(status, field)
            if kind == "counter":
                self._count(name, src, float(value or 0))
            else:
                self._gauge(name, src, None if value is None else float(value))
        self._gauge("nexara_source_streaming", src, 1.0 if status.state == "streaming" else 0.0)
