"""Sliding-window rate limits in one Redis script: exact under concurrency and shared by every
replica (the window is the log of the last `limit` hits, timed by the Redis server's clock)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from common.keys import Keys

_SCRIPT = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local add = ARGV[3] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local retry = window
  if oldest[2] then retry = tonumber(oldest[2]) + window - now end
  return {0, 0, retry}
end
if add then
  redis.call('ZADD', key, now, now .. '-' .. ARGV[4])
  redis.call('PEXPIRE', key, window)
  count = count + 1
end
local reset = window
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {1, limit - count, reset}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Milliseconds until a slot frees (when refused) or the window resets (when allowed).
    reset_ms: int

    @property
    def retry_after_seconds(self) -> int:
        return max(1, -(-self.reset_ms // 1000))


class SlidingWindowLimiter:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(_SCRIPT)

    async def hit(self, name: str, subject: str, *, limit: int, window_seconds: float) -> Decision:
        """Count one request; refuse it when `limit` were counted in the last window."""
        return await self._run(name, subject, limit, window_seconds, add=True)

    async def peek(self, name: str, subject: str, *, limit: int, window_seconds: float) -> Decision:
        """Would a request be allowed now? Counts nothing."""
        return await self._run(name, subject, limit, window_seconds, add=False)

    async def reset(self, name: str, subject: str) -> None:
        await self._redis.delete(self._keys.rate_limit(name, subject))

    async def _run(
        self, name: str, subject: str, limit: int, window_seconds: float, *, add: bool
    ) -> Decision:
        window_ms = int(window_seconds * 1000)
        allowed, remaining, reset = await self._script(
            keys=[self._keys.rate_limit(name, subject)],
            args=[window_ms, limit, "1" if add else "0", secrets.token_hex(6)],
        )
        return Decision(bool(allowed), limit, int(remaining), int(reset))
