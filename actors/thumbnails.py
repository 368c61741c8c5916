"""The latest analysed picture of each cell, as a small JPEG for the console's wall tiles.

The reader thread hands every analysed frame's cell crop to :meth:`LatestFrames.put` (a view: nothing is
copied or encoded per frame). A tile asks every couple of seconds; :meth:`LatestFrames.jpeg` downscales
the latest crop to at most ``max_width_px`` wide and encodes it, at most once per ``min_interval_s`` per
cell (a burst of viewers gets the cached bytes), so an unwatched wall costs nothing. No Ray.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["LatestFrames"]


class LatestFrames:
    """Latest RGB crop per cell index, encoded on demand."""

    def __init__(
        self,
        *,
        max_width_px: int = 320,
        min_interval_s: float = 1.0,
        quality: int = 75,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_width_px = max_width_px
        self.min_interval_s = min_interval_s
        self.quality = quality
        self._clock = clock
        self._latest: dict[int, np.ndarray] = {}
        self._encoded: dict[int, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, cell: int, rgb: np.ndarray) -> None:
        with self._lock:
            self._latest[cell] = rgb

    def jpeg(self, cell: int) -> bytes | None:
        """The cell's latest crop as JPEG bytes, None before its first frame."""
        now = self._clock()
        with self._lock:
            cached = self._encoded.get(cell)
            if cached is not None and now - cached[0] < self.min_interval_s:
                return cached[1]
            rgb = self._latest.get(cell)
        if rgb is None:
            return None
        h, w = rgb.shape[:2]
        if w > self.max_width_px:  # keep the aspect ratio; INTER_AREA averages instead of skipping pixels
            size = (self.max_width_px, max(1, round(h * self.max_width_px / w)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        data = buf.tobytes()
        with self._lock:
            self._encoded[cell] = (now, data)
        return data
