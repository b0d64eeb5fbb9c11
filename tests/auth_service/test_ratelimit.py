"""The sliding-window limiter on the run's Redis (its own key prefix), and the in-memory
window used when Redis is unreachable."""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as aioredis

from common.ratelimit import LocalWindowLimiter, SlidingWindowLimiter
from common.redis_keys import Keys
from tests.support.servers import wait_for


async def test_exact_under_concurrency_and_release(redis_url: str, run_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        limiter = SlidingWindowLimiter(client, Keys(f"{run_prefix}rl-{secrets.token_hex(3)}:"))
        decisions = await asyncio.gather(
            *(limiter.hit("t", "user", limit=7, window_seconds=60) for _ in range(40))
        )
        allowed = [d for d in decisions if d.allowed]
        assert len(allowed) == 7
        assert sorted(d.remaining for d in allowed) == list(range(7))
        assert all(d.entry for d in allowed) and not any(
            d.entry for d in decisions if not d.allowed
        )
        refused = next(d for d in decisions if not d.allowed)
        assert 1 <= refused.retry_after_seconds <= 60
        # Taking one back frees exactly one slot; peeking counts nothing.
        await limiter.release("t", "user", allowed[0].entry)
        assert (await limiter.peek("t", "user", limit=7, window_seconds=60)).allowed
        assert (await limiter.hit("t", "user", limit=7, window_seconds=60)).allowed
        assert not (await limiter.hit("t", "user", limit=7, window_seconds=60)).allowed
        # Another subject has its own window.
        assert (await limiter.hit("t", "other", limit=7, window_seconds=60)).allowed
    finally:
        await client.aclose()


async def test_window_slides(redis_url: str, run_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        limiter = SlidingWindowLimiter(client, Keys(f"{run_prefix}rl-{secrets.token_hex(3)}:"))
        assert (await limiter.hit("s", "u", limit=2, window_seconds=0.3)).allowed
        assert (await limiter.hit("s", "u", limit=2, window_seconds=0.3)).allowed
        refused = await limiter.hit("s", "u", limit=2, window_seconds=0.3)
        assert not refused.allowed and 0 < refused.reset_ms <= 300

        async def freed() -> bool:
            return (await limiter.peek("s", "u", limit=2, window_seconds=0.3)).allowed

        await wait_for(freed, timeout=10)
        assert (await limiter.hit("s", "u", limit=2, window_seconds=0.3)).allowed
        # A lower limit than the log holds: the retry time is when enough entries expire.
        for _ in range(5):
            await limiter.hit("lower", "u", limit=5, window_seconds=60)
        lowered = await limiter.hit("lower", "u", limit=2, window_seconds=60)
        assert not lowered.allowed and lowered.reset_ms > 59_000
    finally:
        await client.aclose()


def test_local_window() -> None:
    now = [100.0]
    limiter = LocalWindowLimiter(max_subjects=2, clock=lambda: now[0])
    assert [limiter.hit("a", limit=3, window_seconds=60).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    refused = limiter.hit("a", limit=3, window_seconds=60)
    assert refused.reset_ms == 60_000 and refused.remaining == 0
    now[0] = 160.0
    assert limiter.hit("a", limit=3, window_seconds=60).allowed
    # Bounded memory: the least recently used subject is forgotten.
    limiter.hit("b", limit=3, window_seconds=60)
    limiter.hit("c", limit=3, window_seconds=60)
    assert [limiter.hit("a", limit=1, window_seconds=60).allowed for _ in range(2)] == [True, False]
