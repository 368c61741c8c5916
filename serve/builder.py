"""Typed builder of the Serve application from ``ray_config.yaml``.

* :func:`build_app` binds the deployments (an embedding deployment -> ``VotingEnsemble`` -> ``Ingress``) with
  the resources, batching and replica counts of the ``serve`` section. The embedding deployment follows the
  model: ``Backbone`` (frames, ``serve.backbone``) for a model on a frame backbone, ``ClipBackbone``
  (whole windows, ``serve.clip``) for a model on a clip backbone; the other one is not deployed.
* :func:`app_builder` is the ``import_path`` target of ``serve deploy`` / ``serve run``: its arguments
  (:class:`AppArgs`) come from the Serve config and are validated.
* :func:`serve_config` writes that Serve config (``nexara serve build``); deployment options live in it so
  an operator can change batching (``user_config``, applied through ``reconfigure`` without a restart) or
  replicas and redeploy.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from nexara.config import NexaraConfig, load_config
from nexara.model_manifest import read_manifest
from serve.clip_deployment import ClipBackboneDeployment
from serve.deployments import BackboneDeployment, VotingEnsembleDeployment
from serve.ingress import Ingress, token_digest

logger = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """Arguments of :func:`app_builder` (the ``args:`` of the application in a Serve config)."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(None, description="Path of ray_config.yaml (default: $NEXARA_CONFIG or the repo's).")
    run_dir: str | None = Field(None, description="Folder for the event log and clips (default: a new run folder).")


def ipaddress_is_loopback(host: str) -> bool:
    """Whether Serve's proxy host only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_run_dir(cfg: NexaraConfig, name: str | None = None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(cfg.sinks.run_dir) / (name or stamp)
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def latest_run_with_cameras(cfg: NexaraConfig) -> Path | None:
    """The newest run folder under ``sinks.run_dir`` that keeps cameras added over the API (``cameras.json``
    listing at least one), or None. What ``nexara serve --resume`` serves on again."""
    import json

    from actors.camera_store import STORE_FILE

    root = Path(cfg.sinks.run_dir)
    found = [p for p in root.glob(f"*/{STORE_FILE}") if p.is_file()] if root.is_dir() else []
    for store in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:  # a look only: a bad file is the restoring manager's to report and set aside, not this scan's
            cameras = json.loads(store.read_bytes()).get("cameras")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(cameras, list) and cameras:
            return store.parent.resolve()
    return None


def embedding_deployment(cfg: NexaraConfig) -> str:
    """The deployment that embeds this model's pixels: ``ClipBackbone`` for a model on a clip backbone
    (manifest ``clip`` entry), else ``Backbone``. (A frame model whose members all read motion still gets a
    ``Backbone`` deployment, which builds no CNN and answers ``(n, 0)`` features: the stream actors' request
    path stays the same for every frame model.)"""
    from nexara.voting import DEFAULT_MODEL_DIR  # torch: only when an app is built

    manifest = read_manifest(cfg.serve.model_dir or DEFAULT_MODEL_DIR, verify=False)
    return "ClipBackbone" if manifest.clip is not None else "Backbone"


def _deployment_options(cfg: NexaraConfig, name: str) -> dict[str, Any]:
    """Serve options of deployment ``name`` from the ``serve`` section (also written by :func:`serve_config`)."""
    s = cfg.serve
    if name == "VotingEnsemble":
        en = s.ensemble
        return {
            "num_replicas": en.num_replicas,
            "max_ongoing_requests": en.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": en.num_cpus},
            "user_config": {"max_batch_size": en.max_batch_size, "batch_wait_timeout_s": en.batch_wait_timeout_s},
        }
    if name == "Ingress":
        return {"ray_actor_options": {"num_cpus": s.ingress_num_cpus}}
    bb = s.clip if name == "ClipBackbone" else s.backbone
    return {
        "num_replicas": bb.num_replicas,
        "max_ongoing_requests": bb.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": bb.num_cpus, "num_gpus": bb.num_gpus},
        "user_config": {"max_batch_size": bb.max_batch_size, "batch_wait_timeout_s": bb.batch_wait_timeout_s},
    }


def build_app(cfg: NexaraConfig, run_dir: str | Path) -> Application:
    s = cfg.serve
    settings = cfg.model_dump(mode="json")
    embedder = embedding_deployment(cfg)
    deployment = ClipBackboneDeployment if embedder == "ClipBackbone" else BackboneDeployment
    threads = s.clip.torch_threads if embedder == "ClipBackbone" else s.backbone.torch_threads
    backbone = deployment.options(  # type: ignore[union-attr]
        **_deployment_options(cfg, embedder)
    ).bind(s.model_dir, weights=cfg.model.weights, device=cfg.model.device, torch_threads=threads)
    en = s.ensemble
    ensemble = VotingEnsembleDeployment.options(  # type: ignore[attr-defined]
        **_deployment_options(cfg, "VotingEnsemble")
    ).bind(s.model_dir, vote=en.vote, vote_k=en.vote_k)
    # the driver's token reaches the ingress as its SHA-256 only: a runtime_env would put the token itself
    # in Ray's actor table and the runtime-env agent's log (a cluster may set the variable on its nodes)
    token = os.environ.get(s.token_env, "")
    digest = token_digest(token) if len(token) >= 16 else None
    return Ingress.options(  # type: ignore[attr-defined]
        **_deployment_options(cfg, "Ingress")
    ).bind(backbone, ensemble, settings, str(run_dir), s.app_name, token_sha256=digest)


def app_builder(args: dict[str, Any]) -> Application:
    """Entry point for ``serve deploy``/``serve run`` (``import_path: serve.builder:app_builder``)."""
    a = AppArgs.model_validate(args)
    cfg = load_config(a.config)
    run_dir = Path(a.run_dir) if a.run_dir else new_run_dir(cfg)
    return build_app(cfg, run_dir)


def serve_config(cfg: NexaraConfig, *, config_path: str | None, run_dir: str | None = None) -> dict[str, Any]:
    """The Serve config (``serve deploy`` file) of this app, deployment options filled from ``cfg``."""
    s = cfg.serve
    args: dict[str, Any] = {}
    if config_path:
        args["config"] = str(Path(config_path).resolve())
    if run_dir:
        args["run_dir"] = str(Path(run_dir).resolve())
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": s.host, "port": s.port},
        "applications": [
            {
                "name": s.app_name,
                "route_prefix": s.route_prefix,
                "import_path": "serve.builder:app_builder",
                "args": args,
                "deployments": [
                    {"name": name, **_deployment_options(cfg, name)}
                    for name in (embedding_deployment(cfg), "VotingEnsemble", "Ingress")
                ],
            }
        ],
    }


def run_local(cfg: NexaraConfig, run_dir: str | Path, *, blocking: bool = False) -> Any:
    """Start Serve's HTTP proxy on ``serve.host:port`` and run the app on the connected Ray instance."""
    if not ipaddress_is_loopback(cfg.serve.host):
        logger.warning(
            "the HTTP API listens on %s:%d, beyond this machine: put TLS in front of it (SECURITY.md)",
            cfg.serve.host,
            cfg.serve.port,
        )
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    return serve.run(
        build_app(cfg, run_dir), name=cfg.serve.app_name, route_prefix=cfg.serve.route_prefix, blocking=blocking
    )
