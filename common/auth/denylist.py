"""The denylist as every verifier sees it: revoked access tokens (by jti) and revoked login
sessions (by sid, the refresh-token family: every access token of the session at once).

PostgreSQL holds it durably (auth_service); Redis holds a cache with one marker key saying the
cache is loaded. When Redis was wiped the marker is gone: verifiers then wait briefly for
auth_service to reload it and refuse (UNAVAILABLE) rather than accept a revoked token. Redis
unreachable: refuse too (fail closed).
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from common.errors import unavailable
from common.redis_keys import Keys


class Denylist:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, wait_seconds: float = 3.0) -> None:
        self._redis = redis
        self._keys = keys
        self._wait_seconds = wait_seconds

    async def is_revoked(self, jti: str, session: str = "") -> bool:
        deadline = asyncio.get_running_loop().time() + self._wait_seconds
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.exists(self._keys.denylist_loaded)
                    pipe.exists(self._keys.denied_token(jti))
                    if session:
                        pipe.exists(self._keys.denied_session(session))
                    loaded, *revoked = await pipe.execute()
            except (OSError, aioredis.RedisError) as exc:
                raise unavailable("token revocation cannot be checked right now") from exc
            if loaded:
                return any(revoked)
            if asyncio.get_running_loop().time() >= deadline:
                raise unavailable("token revocation list is being reloaded; try again")
            await asyncio.sleep(0.05)

    async def mark_loaded(self) -> None:
        await self._redis.set(self._keys.denylist_loaded, "1")

    async def is_loaded(self) -> bool:
        return bool(await self._redis.exists(self._keys.denylist_loaded))

    async def add(
        self, tokens: list[tuple[str, int]], sessions: list[tuple[str, int]] | None = None
    ) -> None:
        """Cache revoked jtis and sessions, each until its newest token would have expired
        anyway (ttl in ms)."""
        if not tokens and not sessions:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for jti, ttl_ms in tokens:
                pipe.set(self._keys.denied_token(jti), "1", px=max(ttl_ms, 1))
            for sid, ttl_ms in sessions or ():
                pipe.set(self._keys.denied_session(sid), "1", px=max(ttl_ms, 1))
            await pipe.execute()
