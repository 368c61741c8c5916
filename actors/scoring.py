"""Scoring, the second live stage: :class:`~actors.records.WindowInfo` in, a typed result out
(:class:`~actors.records.Verdict`, :class:`~actors.records.Dropped` or :class:`~actors.records.Failed`).

Windows are scored through two async callables (the Serve backbone and voting-ensemble handles in
production, in-process models in tests) with at most ``max_in_flight`` windows scoring and ``max_queued``
waiting. A live source drops the OLDEST waiting window rather than queueing without bound; a file read as
fast as possible (``backpressure``) makes the reader wait for room instead (nothing to drop, nothing
falls behind). A failed request (a dead replica) is retried with backoff, ``max_attempts`` in all. Each
frame goes through a frame backbone once: features are cached per cell and shared by overlapping windows.
A clip model's window goes to the clip backbone whole (:class:`ClipEmbedder`: ``(T, H, W, 3)`` uint8 in,
per-time features ``(T', D)`` out). With a cascade gate (:mod:`actors.cascade`), a window the gate keeps
from the model is answered by the gate and counted in :attr:`Scorer.gated`.

The queue lives on the event loop; the reader thread only reserves room (:meth:`Scorer.reserve`) before
it posts a window to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from actors.cascade import Gate
from actors.records import Dropped, Failed, Verdict, WindowInfo, WindowResult, span_of
from nexara.config import WindowsConfig
from nexara.errors import InvalidInputError

logger = logging.getLogger(__name__)

Embed = Callable[[np.ndarray], Awaitable[np.ndarray]]  # frames (n, H, W, 3) -> (n, D); a clip (T, H, W, 3) -> (T', D)
Vote = Callable[[np.ndarray, "np.ndarray | None"], Awaitable[dict[str, Any]]]

_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 8.0


class FeatureCache:
    """Backbone features of one cell's frames by frame id; a frame being embedded for one window is
    awaited, not embedded again, by the overlapping ones."""

    def __init__(self, embed: Embed, timeout_s: float, keep_frames: int) -> None:
        self.embed = embed
        self.timeout_s = timeout_s
        self.keep_frames = keep_frames
        self.cache: dict[int, np.ndarray] = {}
        self.pending: dict[int, asyncio.Future[np.ndarray]] = {}
        self._newest_first_id = 0

    async def features(self, window: WindowInfo) -> np.ndarray:
        """(T, D) float32 features of the window's frames."""
        missing = [i for i in window.frame_ids if i not in self.cache and i not in self.pending]
        if missing:
            await self._embed(window, missing)
        rows = []
        for i in window.frame_ids:
            if i in self.cache:
                rows.append(self.cache[i])
            elif i in self.pending:
                rows.append(await asyncio.shield(self.pending[i]))
            else:  # a frame another window failed to embed: ask again for it alone
                rows.append(np.asarray(await self.embed(window.frames[i][None]))[0])
        self._trim(window.frame_ids[0])
        return np.stack(rows).astype(np.float32)

    async def _embed(self, window: WindowInfo, missing: list[int]) -> None:
        loop = asyncio.get_running_loop()
        futures = {i: loop.create_future() for i in missing}
        self.pending.update(futures)
        try:
            batch = np.stack([window.frames[i] for i in missing])
            feats = np.asarray(await asyncio.wait_for(self.embed(batch), self.timeout_s))
            if feats.shape[0] != len(missing):
                raise InvalidInputError(f"backbone returned {feats.shape[0]} feature rows for {len(missing)} frames")
        except BaseException as exc:
            for i, fut in futures.items():
                self.pending.pop(i, None)
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # mark retrieved: other windows retry on their own
            raise
        for i, row in zip(missing, feats, strict=True):
            self.cache[i] = row
            self.pending.pop(i, None)
            futures[i].set_result(row)

    def _trim(self, first_id: int) -> None:
        # Windows are cut in frame order: frames well before the newest window's first are not needed.
        self._newest_first_id = max(self._newest_first_id, first_id)
        horizon = self._newest_first_id - self.keep_frames
        for i in [i for i in self.cache if i < horizon]:
            del self.cache[i]


class ClipEmbedder:
    """A clip model's window features: the whole window through the clip backbone, once per window."""

    def __init__(self, embed: Embed, timeout_s: float) -> None:
        self.embed = embed
        self.timeout_s = timeout_s

    async def features(self, window: WindowInfo) -> np.ndarray:
        """(T', D) float32 per-time features of the window."""
        feats = np.asarray(await asyncio.wait_for(self.embed(window.clip()), self.timeout_s))
        if feats.ndim != 2 or len(feats) < 1:
            raise InvalidInputError(f"clip backbone returned features of shape {feats.shape}, expected (T', D)")
        return feats.astype(np.float32)


async def score_window(
    window: WindowInfo,
    features: FeatureCache | ClipEmbedder,
    vote: Vote,
    windows: WindowsConfig,
    camera_id: str = "",
    gate: Gate | None = None,
) -> Verdict | Failed:
    """Score one window, retrying a failed request with backoff up to ``windows.max_attempts``; a window
    the cascade's ``gate`` keeps from the model gets the gate's verdict (nothing sent to the model)."""
    if gate is not None:
        gated = gate.verdict(window)
        if gated is not None:
            return gated
    delay = _RETRY_FIRST_S
    error = ""
    for attempt in range(1, windows.max_attempts + 1):
        try:
            feats = await features.features(window)
            result = await asyncio.wait_for(vote(feats, window.motion), windows.request_timeout_s)
            return Verdict(*span_of(window), float(result["violence_probability"]), result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempt == windows.max_attempts:
                logger.error("%s window %d failed after %d attempts: %s", camera_id, window.seq, attempt, exc)
            else:
                logger.warning(
                    "%s window %d attempt %d failed (%s); retrying in %.1f s",
                    camera_id, window.seq, attempt, type(exc).__name__, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
    return Failed(*span_of(window), error)


class Scorer:
    """The bounded queue of one source's windows; every result goes to ``on_result`` on the loop."""

    def __init__(
        self,
        embed: Embed,
        vote: Vote,
        windows: WindowsConfig,
        *,
        frames_per_window: int,
        backpressure: bool,
        on_result: Callable[[WindowResult], None],
        camera_ids: Callable[[int], str] = str,
        clip: bool = False,
        gate: Gate | None = None,
    ) -> None:
        self.embed = embed
        self.vote = vote
        self.windows = windows
        self.frames_per_window = frames_per_window
        self.backpressure = backpressure
        self.on_result = on_result
        self.camera_ids = camera_ids
        self.clip = clip
        self.gate = gate
        self.queue: deque[WindowInfo] = deque()
        self.in_flight = 0
        self.gated: dict[int, int] = {}  # windows answered by the cascade's gate, per cell
        self._features: dict[int, FeatureCache] = {}
        self._clip_embedder = ClipEmbedder(embed, windows.request_timeout_s)
        self._backlog = 0  # windows reserved by the reader and not yet dispatched or dropped
        self._room = threading.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        return not self.queue and not self.in_flight

    # --- reader thread ---------------------------------------------------------------------------

    def reserve(self, stop: threading.Event) -> None:
        """Count a window about to be posted; with backpressure, first wait until there is room."""
        with self._room:
            if self.backpressure:
                while self._backlog >= self.windows.max_queued and not stop.is_set():
                    self._room.wait(0.5)
            self._backlog += 1

    def wake(self) -> None:
        """Release a reader waiting for room (on stop)."""
        with self._room:
            self._room.notify_all()

    # --- event loop ------------------------------------------------------------------------------

    def enqueue(self, window: WindowInfo) -> None:
        with self._room:
            self.queue.append(window)
            while not self.backpressure and len(self.queue) > self.windows.max_queued:
                old = self.queue.popleft()
                self._backlog -= 1
                self.on_result(Dropped(*span_of(old)))
        self.dispatch()

    def dispatch(self) -> None:
        while self.queue and self.in_flight < self.windows.max_in_flight:
            with self._room:
                window = self.queue.popleft()
                self._backlog -= 1
                self._room.notify_all()
            self.in_flight += 1
            task = asyncio.ensure_future(self._score(window))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _score(self, window: WindowInfo) -> None:
        features: FeatureCache | ClipEmbedder = self._clip_embedder
        if not self.clip:
            cache = self._features.get(window.cell)
            if cache is None:
                cache = FeatureCache(self.embed, self.windows.request_timeout_s, self.frames_per_window)
                self._features[window.cell] = cache
            features = cache
        camera_id = self.camera_ids(window.cell)
        result = await score_window(window, features, self.vote, self.windows, camera_id, self.gate)
        if isinstance(result, Verdict) and result.details.get("gated"):
            self.gated[window.cell] = self.gated.get(window.cell, 0) + 1
        self.in_flight -= 1
        self.on_result(result)
        self.dispatch()
