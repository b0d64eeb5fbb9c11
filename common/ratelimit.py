"""Sliding-window rate limits in one Redis script: exact under concurrency and shared by every
replica (the window is the log of the requests counted in the last window, timed by the Redis
server's clock). A counted request can be taken back (a login that succeeded is no failure).

LocalWindowLimiter is the same window in this process's memory: the fallback of a route whose
policy, when Redis is unreachable (or out of its time budget), is to keep limiting each replica
on its own (stand_in: counted in scoreboard_rate_limit_fallbacks_total, and logged).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Counter

from common.logs import Throttle
from common.redis_keys import Keys

log = logging.getLogger("scoreboard.ratelimit")

FALLBACKS = Counter(
    "scoreboard_rate_limit_fallbacks_total",
    "Requests limited in this process alone because the shared limiter (Redis) could not "
    "answer, by limit.",
    ["limit"],
)

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
  -- The request that frees a slot is the one `limit` places from the newest.
  local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  local retry = window
  if freeing[2] then retry = tonumber(freeing[2]) + window - now end
  return {0, 0, retry}
end
if add then
  redis.call('ZADD', key, now, ARGV[4])
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
    # The counted request's entry (to take it back with release); empty when nothing counted.
    entry: str = ""

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

    async def release(self, name: str, subject: str, entry: str) -> None:
        """Take back one counted request (Decision.entry)."""
        if entry:
            await self._redis.zrem(self._keys.rate_limit(name, subject), entry)

    async def reset(self, name: str, subject: str) -> None:
        await self._redis.delete(self._keys.rate_limit(name, subject))

    async def _run(
        self, name: str, subject: str, limit: int, window_seconds: float, *, add: bool
    ) -> Decision:
        window_ms = int(window_seconds * 1000)
        entry = secrets.token_hex(8)
        allowed, remaining, reset = await self._script(
            keys=[self._keys.rate_limit(name, subject)],
            args=[window_ms, limit, "1" if add else "0", entry],
        )
        counted = bool(allowed) and add
        return Decision(bool(allowed), limit, int(remaining), int(reset), entry if counted else "")


class LocalWindowLimiter:
    """The same sliding window, in memory, for one process. Holds at most `max_subjects`
    subjects (least recently used ones are forgotten)."""

    def __init__(
        self,
        *,
        max_subjects: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        warn_seconds: float = 30.0,
    ) -> None:
        self._max_subjects = max_subjects
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        # A fallback is logged at most once per warn_seconds (an outage is one line, not one
        # per request); the metric counts every one.
        self._warnings = Throttle(warn_seconds, clock)

    def stand_in(
        self, name: str, subject: str, *, limit: int, window_seconds: float, error: BaseException
    ) -> Decision:
        """hit() for the shared limit `name` whose Redis call failed with `error`."""
        FALLBACKS.labels(name).inc()
        if self._warnings.due():
            log.warning(
                "shared rate limiter unreachable; limiting in this process only: %r",
                error,
                extra={"limit": name},
            )
        return self.hit(f"{name}\0{subject}", limit=limit, window_seconds=window_seconds)

    def hit(self, subject: str, *, limit: int, window_seconds: float) -> Decision:
        now = self._clock()
        hits = self._hits.pop(subject, None) or deque()
        while hits and hits[0] <= now - window_seconds:
            hits.popleft()
        self._hits[subject] = hits
        if len(self._hits) > self._max_subjects:
            self._hits.popitem(last=False)
        if len(hits) >= limit:
            freeing = hits[len(hits) - limit]
            return Decision(False, limit, 0, int((freeing + window_seconds - now) * 1000))
        hits.append(now)
        reset_ms = int((hits[0] + window_seconds - now) * 1000)
        return Decision(True, limit, limit - len(hits), reset_ms)
