"""The clip-model live path on a private local Ray instance, with the real I3D weights on real shared clips:

* the ``ClipBackbone`` deployment gathers windows from concurrent callers into batches and answers each with
  the same per-time features as the clip backbone applied directly, and refuses a window of another shape;
* the Serve app built from a manifest on a clip backbone deploys ``ClipBackbone`` (no frame ``Backbone``), and
  a camera added to it has its windows cut, embedded whole and voted on; with the cascade on, the windows the
  motion gate keeps from the model are counted and never reach the clip deployment.

The model is a small clip model written here (I3D at T=8, 112 px; an untrained probe on the clip features
and the shipped model's ``motion_trees`` member): the plumbing is under test, not the accuracy. The I3D
weights come from the cache ``make setup`` fills; without them the tests fail naming how to get them.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nexara.backbones.spec import ClipSpec

pytestmark = pytest.mark.timeout(900)

SPEC = ClipSpec(num_frames=8, window_s=2.0, short_side_px=128, crop_px=112)
TOKEN = "clip-serve-test-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_clip_model(folder: Path) -> Path:
    """A manifest on i3d_kinetics400 with :data:`SPEC`: an untrained probe on the per-time clip features and
    the shipped model's motion_trees member, weights 0.5 / 0.5."""
    import torch

    from nexara.backbones.i3d import I3D_KINETICS400
    from nexara.heads import create_head
    from nexara.model_manifest import ClipPreprocessingEntry, MemberEntry, PreprocessingEntry, read_manifest
    from nexara.model_manifest import write_manifest as write
    from nexara.voting import DEFAULT_MODEL_DIR

    folder.mkdir(parents=True, exist_ok=True)
    base = read_manifest(DEFAULT_MODEL_DIR)
    trees = next(m for m in base.members if m.name == "motion_trees")
    shutil.copy(DEFAULT_MODEL_DIR / trees.weights_file, folder / trees.weights_file)
    head_config = {"name": "probe", "input_dim": 1024, "motion": False, "kwargs": {"hidden": 0, "dropout": 0.0}}
    torch.manual_seed(0)
    torch.save(create_head(**head_config).state_dict(), folder / "i3d_probe.pt")
    probe = MemberEntry(
        name="i3d_probe",
        head_config=head_config,
        weights_file="i3d_probe.pt",
        sha256=hashlib.sha256((folder / "i3d_probe.pt").read_bytes()).hexdigest(),
    )
    frame = SPEC.frame_spec()
    manifest = base.model_copy(
        update={
            "version": "test-clip-serve",
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "backbone": I3D_KINETICS400,
            "preprocessing": PreprocessingEntry(**frame.to_dict(), hash=frame.hash()),
            "frames_per_clip": SPEC.num_frames,
            "feature_dim": 1024,
            "clip": ClipPreprocessingEntry.from_spec(SPEC),
            "members": [probe, trees],
            "weights": [0.5, 0.5],
            "temperature": 1.0,
            "threshold": 0.5,
        }
    )
    write(manifest, folder)
    read_manifest(folder)  # verified as every runtime reads it
    return folder


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip_model(tmp_path_factory.mktemp("clip-model"))


def _windows(shared_clips: Path, names: list[str]) -> np.ndarray:
    from nexara.media import sample_windows

    out: list[np.ndarray] = []
    for name in names:
        w = sample_windows(
            shared_clips / name, window_s=SPEC.window_s, hop_s=1.0, num_frames=SPEC.num_frames,
            size_hw=SPEC.decode_size_hw, resize="center_crop",
        )  # fmt: skip
        out.extend(w.frames)
    return np.stack(out)


def test_clip_deployment_batches_windows_and_matches_the_backbone(
    ray_local: None, shared_clips: Path, clip_model: Path
) -> None:
    import ray
    from ray import serve

    from serve.clip_deployment import ClipBackboneDeployment, ClipEmbedder

    windows = _windows(shared_clips, ["fight/fi063.mp4", "noFight/nofi002.mp4", "fight/fi001.mp4"])
    assert len(windows) >= 5
    app = ClipBackboneDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": 0.5},
        user_config={"max_batch_size": 4, "batch_wait_timeout_s": 0.5},
    ).bind(str(clip_model), device="cpu")
    handle = serve.run(app, name="clip-batch", route_prefix=None)
    try:

        async def all_at_once() -> list[np.ndarray]:
            # as stream actors send them: one window per request, through the object store
            return list(await asyncio.gather(*(handle.remote(ray.put(w)) for w in windows)))

        served = np.stack(asyncio.run(all_at_once()))
        stats = handle.options(method_name="stats").remote().result()
        direct = ClipEmbedder(clip_model, device="cpu")(windows)
        t_prime = direct.shape[1]
        assert served.shape == (len(windows), t_prime, 1024) and served.dtype == np.float16
        np.testing.assert_allclose(served.astype(np.float32), direct.astype(np.float32), atol=2e-2, rtol=1e-2)
        assert stats["windows"] == len(windows) and stats["max_batch_windows"] > 1
        assert stats["batches"] < len(windows) and stats["max_batch_size"] == 4
        with pytest.raises(Exception, match=r"expected a window of shape \(8, 128, 128, 3\) uint8"):
            handle.remote(windows[0][:4]).result()
    finally:
        serve.delete("clip-batch")


@pytest.fixture(scope="module")
def clip_app(ray_local: None, clip_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import os

    from ray import serve

    from nexara.config import NexaraConfig
    from serve.builder import embedding_deployment, run_local

    os.environ["NEXARA_API_TOKEN"] = TOKEN
    run_dir = tmp_path_factory.mktemp("clip-run")
    cfg = NexaraConfig.model_validate(
        {
            "serve": {
                "app_name": "cliplive",
                "port": _free_port(),
                "model_dir": str(clip_model),
                "clip": {"num_cpus": 0.5, "max_batch_size": 2},
                "cascade": {"gate_member": "motion_trees", "gate_threshold": 0.45},
            },
            "sinks": {"run_dir": str(run_dir), "webhook": None, "clips": False},
        }
    )
    assert embedding_deployment(cfg) == "ClipBackbone"
    run_local(cfg, run_dir)
    yield {"cfg": cfg, "run_dir": run_dir}
    serve.delete("cliplive")


@pytest.mark.slow
def test_camera_on_a_clip_model_is_scored_through_the_clip_deployment_with_the_cascade(
    clip_app: dict[str, Any], shared_clips: Path, tmp_path: Path
) -> None:
    import ray
    from ray import serve

    from actors.compose import concat_clips
    from actors.stream_actor import get_manager

    names = ["noFight/nofi002.mp4", "fight/fi063.mp4", "noFight/nofi001.mp4", "fight/fi002.mp4"]
    video = tmp_path / "cam.mp4"
    concat_clips([shared_clips / n for n in names], video, size_hw=(240, 320), fps=10)
    status = serve.status().applications["cliplive"].deployments
    assert "ClipBackbone" in status and "Backbone" not in status  # no frame backbone for a clip model
    manager = get_manager("cliplive")
    ray.get(manager.add.remote({"id": "cam", "url": str(video), "pacing": "fast"}), timeout=300)
    assert ray.get(manager.wait_all.remote(600), timeout=660)
    st = ray.get(manager.status.remote("cam"))
    cell = st.cells[0]
    # ~11 s of video: windows end every 1 s from 1.9 s on
    assert cell.windows_scored >= 8 and cell.windows_dropped == 0 and cell.windows_failed == 0
    clip_stats = serve.get_deployment_handle("ClipBackbone", app_name="cliplive").stats.remote().result()
    # the gate answered some windows, the clip model the rest, and nothing else reached it
    assert clip_stats["windows"] == cell.windows_scored - cell.windows_gated
    assert 0 < cell.windows_gated < cell.windows_scored, (cell.windows_gated, cell.windows_scored)
    assert ray.get(manager.remove.remote("cam")).cells[0].windows_gated == cell.windows_gated
