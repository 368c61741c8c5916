"""The ingress's per-token rate limit (serve.rate_limit): burst, sustained rate, Retry-After."""

from __future__ import annotations

from serve.rate_limit import RateLimiter


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_then_refill_per_token() -> None:
    clock = _Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.acquire("token-a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("token-a")
    assert 0.9 <= wait <= 1.0  # one request per second
    assert RateLimiter.retry_after_header(wait) == "1"
    assert limiter.acquire("token-b") == 0.0  # buckets are per token
    clock.now += 1.0
    assert limiter.acquire("token-a") == 0.0
    assert limiter.acquire("token-a") > 0
    clock.now += 3600
    assert [limiter.acquire("token-a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refills to the burst only
    assert limiter.acquire("token-a") > 0


def test_zero_rate_turns_it_off_and_tokens_are_not_kept() -> None:
    off = RateLimiter(per_minute=0, burst=1)
    assert all(off.acquire("t") == 0.0 for _ in range(1000))
    on = RateLimiter(per_minute=1, burst=1)
    on.acquire("secret-token-value")
    assert "secret-token-value" not in repr(on._buckets)
    assert RateLimiter.retry_after_header(0.01) == "1" and RateLimiter.retry_after_header(59.2) == "60"
