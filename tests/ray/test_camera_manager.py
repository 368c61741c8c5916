"""The camera manager refuses, with a named reason, a camera whose stream actor cannot be placed (a full
cluster) instead of hanging the request."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def test_camera_beyond_capacity_is_refused_with_the_reason(ray_local: None, shared_clips: Path, tmp_path: Path) -> None:
    import ray

    from actors.stream_actor import CameraError, CameraManager
    from nexara.config import NexaraConfig

    settings = NexaraConfig.model_validate(
        {"serve": {"app_name": "capacity", "stream_num_cpus": 64, "camera_start_timeout_s": 3}}
    ).model_dump(mode="json")
    manager = CameraManager.remote(settings, str(tmp_path), "capacity")  # type: ignore[attr-defined]
    clip = str(shared_clips / "noFight" / "nofi108.mp4")
    with pytest.raises(CameraError) as err:
        ray.get(manager.add.remote({"id": "cam", "url": clip}), timeout=120)
    cause = getattr(err.value, "cause", None) or err.value  # the manager's error, through Ray's wrapper
    assert cause.code == "no_capacity"
    assert "stream_num_cpus=64" in cause.message and "camera cam" in cause.message
    assert ray.get(manager.info.remote())["cameras"] == []  # nothing half-added
    ray.kill(manager)
