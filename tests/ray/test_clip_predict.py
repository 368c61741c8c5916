"""A model on a clip backbone through Ray Data batch predict and through ``POST /v1/predict`` of the Serve
app, on real shared clips: both give the in-process runtime's verdict (one score per window, the clip at
the maximum), and an unreadable input gets its error record or 4xx.

The model is a small random-weight one (I3D at T=8, 112 px; real I3D weights from the cache ``make setup``
fills): the plumbing is under test, not the accuracy."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from model_factory import SMALL_CLIP, write_model

from nexara.config import NexaraConfig
from nexara.predict import Predictor

pytestmark = pytest.mark.timeout(900)

TOKEN = "clip-predict-test-token-0123456789"
CLIPS = ["fight/fi063.mp4", "noFight/nofi002.mp4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("clip-model"), clip=SMALL_CLIP, inputs=("appearance", "motion"))


@pytest.fixture(scope="module")
def in_process(clip_model: Path, shared_clips: Path) -> dict[str, dict[str, Any]]:
    predictor = Predictor(clip_model, device="cpu")
    return {name: predictor.predict_source(str(shared_clips / name)) for name in CLIPS}


def test_ray_data_batch_predict_on_a_clip_model(
    ray_local: None, clip_model: Path, shared_clips: Path, in_process: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from training.batch_predict import predict_with_ray

    broken = tmp_path / "broken.mp4"
    broken.write_bytes((shared_clips / CLIPS[0]).read_bytes()[:5000])
    inputs = [str(shared_clips / CLIPS[0]), str(broken), str(shared_clips / CLIPS[1])]
    records = list(predict_with_ray(inputs, NexaraConfig(), model_dir=clip_model))
    assert [r["path"] for r in records] == inputs  # input order
    assert records[1]["error"] and records[1]["reason"]
    for name, rec in zip(CLIPS, (records[0], records[2]), strict=True):
        want = in_process[name]
        assert rec["violence_probability"] == pytest.approx(want["violence_probability"], abs=1e-5)
        assert rec["members"] == pytest.approx(want["members"], abs=1e-5)
        assert rec["frames_used"] == want["frames_used"] and rec["frames_used"] % SMALL_CLIP.num_frames == 0


@pytest.fixture(scope="module")
def clip_app(ray_local: None, clip_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    from serve.builder import run_local

    os.environ["NEXARA_API_TOKEN"] = TOKEN
    run_dir = tmp_path_factory.mktemp("clip-predict-run")
    port = _free_port()
    cfg = NexaraConfig.model_validate(
        {
            "serve": {"app_name": "clippredict", "port": port, "model_dir": str(clip_model), "clip": {"num_cpus": 0.5}},
            "sinks": {"run_dir": str(run_dir), "webhook": None, "clips": False},
        }
    )
    run_local(cfg, run_dir)
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()  # the HTTP proxy too: a later app starts its own on its own port


def test_http_predict_on_a_clip_model(clip_app: str, shared_clips: Path, in_process: dict[str, dict[str, Any]]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for name in CLIPS:
        body = (shared_clips / name).read_bytes()
        r = httpx.post(f"{clip_app}/v1/predict", content=body, headers=headers, params={"name": name}, timeout=300)
        assert r.status_code == 200, r.text
        rec, want = r.json(), in_process[name]
        assert rec["path"] == name and rec["model_version"] == want["model_version"]
        # the ClipBackbone deployment answers in float16: the probability agrees to that precision
        assert rec["violence_probability"] == pytest.approx(want["violence_probability"], abs=0.02)
        assert rec["frames_used"] == want["frames_used"] and rec["duration_s"] == want["duration_s"]
    bad = httpx.post(f"{clip_app}/v1/predict", content=b"not a video" * 100, headers=headers, timeout=60)
    assert bad.status_code == 415 and bad.json()["error"]["code"] == "not_a_video"
