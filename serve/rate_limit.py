"""Per-token request rate limit of the HTTP ingress (``serve.rate_limit``): one token bucket per key.

Pure logic (no Ray, no FastAPI), so it is tested without a server. Each ingress replica keeps its own
buckets: with N replicas a token gets up to N times the configured rate.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]

# Buckets kept at most (one per distinct token seen; only valid tokens reach the limiter).
_MAX_KEYS = 1024


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp_s: float


class RateLimiter:
    """``per_minute`` requests per minute sustained, ``burst`` at once; ``per_minute == 0`` turns it off.
    Keys are hashed, so the raw bearer token is never kept in the limiter's memory."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = max(1, int(burst))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one request for ``key``: 0.0 when allowed, else the seconds until one is (Retry-After)."""
        if self.rate_per_s <= 0:
            return 0.0
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(digest)
            if bucket is None:
                if len(self._buckets) >= _MAX_KEYS:
                    self._buckets.clear()  # only valid tokens get here: a full table is a config change
                bucket = self._buckets[digest] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp_s) * self.rate_per_s)
            bucket.stamp_s = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate_per_s

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """Retry-After in whole seconds (rounded up, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
