"""actors.cascade and the Scorer with a gate: windows below the gate get the gate member's verdict and never
reach the model; the others are scored as without a cascade (no Ray: fake model calls, the shipped model's
real motion member as the gate)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.cascade import Gate, check_gate_threshold, load_gate
from actors.records import Verdict, WindowInfo, WindowResult
from actors.scoring import Scorer
from nexara.config import WindowsConfig
from nexara.errors import ConfigError, ModelError
from nexara.model_manifest import read_manifest
from nexara.motion import MOTION_DIM
from nexara.voting import DEFAULT_MODEL_DIR, EnsembleModel

pytestmark = pytest.mark.unit

T, HW, DIM = 4, (8, 8), 3


def _window(seq: int, motion_level: float | None, cell: int = 0) -> WindowInfo:
    ids = tuple(range(seq, seq + T))
    frames = {i: np.full((*HW, 3), i, np.uint8) for i in ids}
    motion = None if motion_level is None else np.full(MOTION_DIM, motion_level, np.float32)
    return WindowInfo(cell, seq, float(seq), float(seq) + 2.0, ids, frames, motion, 0.0)


class _Model:
    """The clip backbone and the vote, as the stream actor sees them (awaitables), counting calls."""

    def __init__(self) -> None:
        self.embedded: list[tuple[int, ...]] = []
        self.votes = 0

    async def embed(self, clip: np.ndarray) -> np.ndarray:
        self.embedded.append(clip.shape)
        return np.ones((2, DIM), np.float16)  # per-time features (T', D)

    async def vote(self, feats: np.ndarray, motion: np.ndarray | None) -> dict[str, Any]:
        self.votes += 1
        assert feats.shape == (2, DIM) and feats.dtype == np.float32
        return {"violence_probability": 0.9, "violent": True}


# a gate whose probability is the window's motion level (the decision logic alone)
LEVEL_GATE = Gate("motion_trees", 0.3, lambda m: float(m[0]), "test-1")


def _score(windows: list[WindowInfo], gate: Gate | None) -> tuple[list[WindowResult], Scorer, _Model]:
    model = _Model()
    results: list[WindowResult] = []

    async def main() -> Scorer:
        done = asyncio.Event()

        def on_result(r: WindowResult) -> None:
            results.append(r)
            if len(results) == len(windows):
                done.set()

        scorer = Scorer(
            model.embed, model.vote, WindowsConfig(max_queued=16), frames_per_window=T, backpressure=True,
            on_result=on_result, clip=True, gate=gate,
        )  # fmt: skip
        for w in windows:
            scorer.enqueue(w)
        await asyncio.wait_for(done.wait(), 10)
        return scorer

    scorer = asyncio.run(main())
    return sorted(results, key=lambda r: (r.cell, r.seq)), scorer, model


def test_windows_below_the_gate_get_its_verdict_and_skip_the_model() -> None:
    windows = [_window(0, 0.1), _window(1, 0.3), _window(2, 0.29, cell=1), _window(3, 0.8), _window(4, None)]
    results, scorer, model = _score(windows, LEVEL_GATE)
    assert all(isinstance(r, Verdict) for r in results)
    by_seq = {r.seq: r for r in results if isinstance(r, Verdict)}
    # below the gate: the gate member's own probability, not violent, marked, nothing sent to the model
    for seq, p in ((0, 0.1), (2, 0.29)):
        v = by_seq[seq]
        assert v.probability == pytest.approx(p)
        assert v.details["gated"] is True and v.details["violent"] is False
        assert v.details["gate_member"] == "motion_trees" and v.details["members"] == {"motion_trees": pytest.approx(p)}
    # at or above the gate, and a window without motion statistics: the whole model
    assert [by_seq[s].probability for s in (1, 3, 4)] == [0.9, 0.9, 0.9]
    assert not any(by_seq[s].details.get("gated") for s in (1, 3, 4))
    assert model.votes == 3 and model.embedded == [(T, *HW, 3)] * 3  # whole windows to the clip backbone
    assert scorer.gated == {0: 1, 1: 1}  # counted per cell (CellStatus.windows_gated)


def test_without_a_gate_every_window_reaches_the_model() -> None:
    results, scorer, model = _score([_window(0, 0.0), _window(1, 0.0)], None)
    assert [r.probability for r in results if isinstance(r, Verdict)] == [0.9, 0.9]
    assert model.votes == 2 and scorer.gated == {}


def test_gate_threshold_above_the_enter_threshold_is_refused() -> None:
    check_gate_threshold(0.3, 0.6, "cam")
    check_gate_threshold(0.6, 0.6, "cam")
    with pytest.raises(ConfigError, match=r"gate_threshold \(0.7\) must be <= confirmation.enter_threshold \(0.6\)"):
        check_gate_threshold(0.7, 0.6, "cam")


def test_the_gate_is_the_manifest_member_as_the_ensemble_scores_it() -> None:
    manifest = read_manifest(DEFAULT_MODEL_DIR)
    gate = load_gate(DEFAULT_MODEL_DIR, manifest, "motion_trees", 0.25)
    rng = np.random.default_rng(0)
    motion = rng.normal(0.0, 1.0, (6, MOTION_DIM)).astype(np.float32)
    ensemble = EnsembleModel(DEFAULT_MODEL_DIR)
    col = ensemble.names.index("motion_trees")
    member = ensemble.member_probs(np.zeros((6, 1, manifest.feature_dim), np.float32), motion)[:, col]
    assert [gate.score(m) for m in motion] == pytest.approx(member.tolist(), abs=1e-6)
    assert gate.model_version == manifest.version


def test_a_gate_that_is_not_a_motion_member_is_refused(tmp_path: Path) -> None:
    manifest = read_manifest(DEFAULT_MODEL_DIR)
    with pytest.raises(ModelError, match=r"'nope' is not a member of model .*motion_lr"):
        load_gate(DEFAULT_MODEL_DIR, manifest, "nope", 0.2)
    appearance = manifest.model_copy(
        update={"members": [manifest.members[0].model_copy(update={"input": "appearance"}), *manifest.members[1:]]}
    )
    with pytest.raises(ModelError, match=r"reads appearance features.*that read motion: \['motion_mlp'"):
        load_gate(DEFAULT_MODEL_DIR, appearance, manifest.members[0].name, 0.2)
