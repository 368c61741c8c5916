"""Shared fixtures. Markers come from the folder a test lives in (unit, ray, e2e, gpu)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEXARA_SHARED", REPO.parent / "shared")).resolve()
CLIPS_DIR = SHARED / "data" / "surveillance-fight"
CLIPS_CSV = CLIPS_DIR / "clips.csv"

# Tests of the live machinery (streams, Serve, events, console, shutdown) run on the CPU-light motion model
# wherever no model is configured; tests of the shipped default model name nexara.voting.SHIPPED_MODEL_DIR.
# Export NEXARA_MODEL_DIR to run them all on another model. Set before nexara is imported (Ray workers and
# subprocesses inherit it).
os.environ.setdefault("NEXARA_MODEL_DIR", str(REPO / "nexara" / "models" / "motion-2026.11.21-2"))

_FOLDER_MARKERS = {"unit", "ray", "e2e", "gpu"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(REPO / "tests")
        if rel.parts and rel.parts[0] in _FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, rel.parts[0]))


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    """Folder of the real CCTV clips (read from ../shared, never copied into the project)."""
    if not CLIPS_CSV.is_file():
        pytest.skip(f"shared clips not found at {CLIPS_DIR} (set NEXARA_SHARED)")
    return CLIPS_DIR


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One private local Ray instance per test session (never attaches to a cluster on the host)."""
    import ray

    from cluster.runtime import start_local
    from nexara.config import RayConfig

    if not ray.is_initialized():  # retried when the node misses Ray's start-up deadline on a loaded machine
        start_local(RayConfig(num_cpus=2, object_store_memory_mb=512, include_dashboard=False), log_to_driver=False)
    yield
    ray.shutdown()
