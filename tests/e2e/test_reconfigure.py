"""The operator's path for retuning batching on a running app: the Serve config that ``nexara serve build``
writes, deployed, then deployed again with a new backbone ``max_batch_size`` in its ``user_config``. Serve
calls ``reconfigure`` on the running replica (same process, no restart) and the batches follow."""

from __future__ import annotations

import asyncio
import copy
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

TOKEN = "reconfigure-token-0123456789"

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _real_frames(shared_clips: Path, size_hw: tuple[int, int], n: int) -> np.ndarray:
    from nexara.media import iter_frames

    with iter_frames(str(shared_clips / "fight" / "fi003.mp4"), fps=8, size_hw=size_hw) as it:
        frames = [f.rgb for f in it]
    return np.stack(frames[:n])


def _burst(handle: Any, frames: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` concurrent one-frame requests (as many cameras at once)."""

    async def go() -> list[np.ndarray]:
        return list(await asyncio.gather(*(handle.remote(frames[i % len(frames)][None]) for i in range(n))))

    return asyncio.run(go())


def _new_batches(before: dict[str, Any], after: dict[str, Any]) -> list[int]:
    n = after["batches"] - before["batches"]
    return list(after["recent_batch_frames"][-n:]) if n else []


def test_backbone_batch_size_changes_on_the_running_app(ray_local: None, shared_clips: Path, tmp_path: Path) -> None:
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from nexara.config import load_config
    from serve.builder import serve_config

    cfg_path = tmp_path / "ray_config.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "serve": {
                    "port": _free_port(),
                    "app_name": "retune",
                    "backbone": {"max_batch_size": 8, "batch_wait_timeout_s": 0.25},
                },
                "sinks": {"run_dir": str(tmp_path / "runs")},
            }
        )
    )
    cfg = load_config(cfg_path)
    conf = serve_config(cfg, config_path=str(cfg_path), run_dir=str(tmp_path / "run"))
    # a cluster sets the API token on its nodes; this local instance hands it to the app
    conf["applications"][0]["runtime_env"] = {"env_vars": {cfg.serve.token_env: TOKEN}}
    serve.start(http_options=conf["http_options"])
    client = _get_global_client()
    try:
        client.deploy_apps(ServeDeploySchema.model_validate(conf))
        client._wait_for_application_running("retune", timeout_s=300)
        handle = serve.get_deployment_handle("Backbone", app_name="retune")
        frames = _real_frames(shared_clips, (224, 224), 8)

        s0 = handle.stats.remote().result()
        assert s0["max_batch_size"] == 8
        _burst(handle, frames, 24)
        s1 = handle.stats.remote().result()
        first = _new_batches(s0, s1)
        assert sum(first) == 24 and max(first) <= 8
        assert max(first) > 2, first  # 24 requests at once with a 0.25 s wait: batches fill past 2

        retuned = copy.deepcopy(conf)
        backbone = next(d for d in retuned["applications"][0]["deployments"] if d["name"] == "Backbone")
        backbone["user_config"]["max_batch_size"] = 2
        client.deploy_apps(ServeDeploySchema.model_validate(retuned))
        deadline = time.monotonic() + 120
        while handle.stats.remote().result()["max_batch_size"] != 2:
            assert time.monotonic() < deadline, "reconfigure never reached the replica"
            time.sleep(0.5)
        client._wait_for_application_running("retune", timeout_s=120)
        s2 = handle.stats.remote().result()
        assert s2["pid"] == s1["pid"], "the replica was restarted instead of reconfigured"

        feats = _burst(handle, frames, 24)
        s3 = handle.stats.remote().result()
        second = _new_batches(s2, s3)
        assert sum(second) == 24 and max(second) == 2, second
        assert all(f.shape == (1, s3["feature_dim"]) for f in feats)

        # a request larger than the batch is split across batches, rows in order
        whole = handle.remote(frames[:5]).result()
        single = np.concatenate([handle.remote(frames[i][None]).result() for i in range(5)])
        assert whole.shape == single.shape == (5, s3["feature_dim"])
        np.testing.assert_allclose(whole.astype(np.float32), single.astype(np.float32), atol=2e-2)
    finally:
        serve.shutdown()
