"""actors.scoring on its own: windows in, Verdict / Dropped / Failed out (fake embed and vote, no threads
besides the event loop, no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from actors.records import Dropped, Failed, Verdict, WindowInfo, WindowResult
from actors.scoring import FeatureCache, Scorer, score_window
from nexara.config import WindowsConfig

pytestmark = pytest.mark.unit

DIM = 3


def _window(seq: int, first_id: int = 0, t: int = 4, cell: int = 0) -> WindowInfo:
    ids = tuple(range(first_id, first_id + t))
    frames = {i: np.full((2, 2, 3), i, np.uint8) for i in ids}
    return WindowInfo(cell, seq, float(seq), float(seq) + 2.0, ids, frames, None, 0.0)


class _Fake:
    def __init__(self, p: float = 0.7, fail_votes: int = 0, vote_delay_s: float = 0.0) -> None:
        self.p = p
        self.fail_votes = fail_votes
        self.vote_delay_s = vote_delay_s
        self.embedded: list[int] = []
        self.votes = 0

    async def embed(self, frames: np.ndarray) -> np.ndarray:
        self.embedded.extend(int(f[0, 0, 0]) for f in frames)
        return np.repeat(frames[:, :1, 0, 0].astype(np.float32), DIM, axis=1)

    async def vote(self, feats: np.ndarray, motion: np.ndarray | None) -> dict[str, Any]:
        self.votes += 1
        if self.vote_delay_s:
            await asyncio.sleep(self.vote_delay_s)
        if self.votes <= self.fail_votes:
            raise ConnectionError("replica died")
        assert feats.shape == (4, DIM) and feats.dtype == np.float32
        return {"violence_probability": self.p, "label": "violent"}


def test_verdict_carries_the_span_and_probability_and_frames_are_embedded_once() -> None:
    fake = _Fake()
    cache = FeatureCache(fake.embed, timeout_s=5.0, keep_frames=4)

    async def main() -> list[Verdict | Failed]:
        return [await score_window(w, cache, fake.vote, WindowsConfig()) for w in (_window(0), _window(1, 2))]

    a, b = asyncio.run(main())
    assert isinstance(a, Verdict) and (a.cell, a.seq, a.start_s, a.end_s) == (0, 0, 0.0, 2.0)
    assert a.probability == 0.7 and a.details["label"] == "violent"
    assert isinstance(b, Verdict) and b.seq == 1
    assert fake.embedded == [0, 1, 2, 3, 4, 5]  # frames 2 and 3 shared by both windows


def test_failed_request_is_retried_then_failed() -> None:
    windows = WindowsConfig(max_attempts=2)
    retried = _Fake(fail_votes=1)
    cache = FeatureCache(retried.embed, timeout_s=5.0, keep_frames=4)
    assert isinstance(asyncio.run(score_window(_window(0), cache, retried.vote, windows)), Verdict)
    assert retried.votes == 2
    dead = _Fake(fail_votes=10)
    cache = FeatureCache(dead.embed, timeout_s=5.0, keep_frames=4)
    result = asyncio.run(score_window(_window(0), cache, dead.vote, windows))
    assert isinstance(result, Failed) and "replica died" in result.error and dead.votes == 2


def test_timeout_is_a_failure() -> None:
    slow = _Fake(vote_delay_s=1.0)
    cache = FeatureCache(slow.embed, timeout_s=5.0, keep_frames=4)
    windows = WindowsConfig(max_attempts=1, request_timeout_s=0.05)
    result = asyncio.run(score_window(_window(0), cache, slow.vote, windows))
    assert isinstance(result, Failed) and "Timeout" in result.error


def _run_scorer(backpressure: bool, n: int) -> list[WindowResult]:
    fake = _Fake(vote_delay_s=0.05)
    results: list[WindowResult] = []

    async def main() -> None:
        done = asyncio.Event()

        def on_result(r: WindowResult) -> None:
            results.append(r)
            if len(results) == n:
                done.set()

        scorer = Scorer(
            fake.embed, fake.vote, WindowsConfig(max_in_flight=1, max_queued=1),
            frames_per_window=4, backpressure=backpressure, on_result=on_result,
        )  # fmt: skip
        for seq in range(n):
            scorer.enqueue(_window(seq, first_id=seq))
        await asyncio.wait_for(done.wait(), 10)
        assert scorer.idle

    asyncio.run(main())
    return results


def test_live_source_drops_the_oldest_waiting_window() -> None:
    results = _run_scorer(backpressure=False, n=4)
    by_seq = {r.seq: r for r in results}
    assert sorted(by_seq) == [0, 1, 2, 3]
    # window 0 is scoring; 1 and 2 each pushed out of the one-slot queue by the next one
    assert [type(by_seq[s]).__name__ for s in range(4)] == ["Verdict", "Dropped", "Dropped", "Verdict"]
    assert isinstance(by_seq[1], Dropped) and by_seq[1].end_s == 3.0


def test_file_read_fast_never_drops() -> None:
    results = _run_scorer(backpressure=True, n=4)
    assert all(isinstance(r, Verdict) for r in results) and len(results) == 4
