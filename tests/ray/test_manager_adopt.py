"""The detached camera manager outlives its app: a redeploy (or a later test module) with other settings used
to get the old manager with the old settings and run folder (get_if_exists). It now takes the new ones."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def test_a_redeploy_gets_its_own_settings_and_run_folder(ray_local: None, tmp_path: Path) -> None:
    import ray

    from actors.stream_actor import get_manager, get_or_create_manager
    from nexara.config import NexaraConfig

    def settings(port: int) -> dict[str, object]:
        return NexaraConfig.model_validate({"serve": {"app_name": "adopt", "port": port}}).model_dump(mode="json")

    first = get_or_create_manager(settings(8101), str(tmp_path / "a"), "adopt")
    try:
        assert ray.get(first.info.remote())["run_dir"] == str((tmp_path / "a").resolve())
        again = get_or_create_manager(settings(8102), str(tmp_path / "b"), "adopt")
        info = ray.get(again.info.remote())  # ordered after adopt(): the new settings are in force
        assert info["run_dir"] == str((tmp_path / "b").resolve())
        assert ray.get(again.adopt.remote(settings(8102), str(tmp_path / "b"))) is True
    finally:
        ray.kill(get_manager("adopt"))
