"""Keeps the Redis cache of the denylist loaded from PostgreSQL, and purges expired rows.

When Redis loses the cache (restart, flush), verifiers refuse to decide until it is back; this
loop notices within a fraction of a second and reloads it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from auth_service.store import AuthStore
from common.denylist import Denylist

log = logging.getLogger("scoreboard.auth.keeper")


async def reload_denylist(store: AuthStore, denylist: Denylist) -> int:
    revoked = await store.revoked_tokens()
    now = time.time()
    await denylist.add(
        [(jti, int((exp.timestamp() - now) * 1000) + 60_000) for jti, exp in revoked]
    )
    await denylist.mark_loaded()
    return len(revoked)


async def keep_denylist_loaded(
    store: AuthStore, denylist: Denylist, *, interval: float = 0.25, purge_every: float = 3600.0
) -> None:
    last_purge = 0.0
    while True:
        try:
            if not await denylist.is_loaded():
                count = await reload_denylist(store, denylist)
                log.info("denylist cache loaded", extra={"revoked": count})
            if time.monotonic() - last_purge > purge_every:
                await store.purge_expired()
                last_purge = time.monotonic()
        except (OSError, aioredis.RedisError) as exc:
            log.warning("denylist keeper cannot reach Redis: %s", exc)
        await asyncio.sleep(interval)
