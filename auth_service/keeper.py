"""Keeps the Redis cache of the denylist in step with PostgreSQL, and purges expired rows.

When Redis loses the cache (restart, flush), verifiers refuse to decide until it is back; this
loop notices within a fraction of a second and reloads it. It also re-copies recent revocations
every few seconds, so a Redis write that failed after a revocation was committed is healed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import psycopg
import redis.asyncio as aioredis

from auth_service.store import AuthStore, Revocations
from common.auth.denylist import Denylist

log = logging.getLogger("scoreboard.auth.keeper")
# Revocations committed by transactions that started before the previous sync still count.
_SYNC_OVERLAP = timedelta(seconds=60)
# Cached entries outlive the token by this much (clock skew, verifier leeway).
_TTL_MARGIN_MS = 60_000


def _ttl_ms(expires: datetime, now: float) -> int:
    return int((expires.timestamp() - now) * 1000) + _TTL_MARGIN_MS


async def copy_revocations(revocations: Revocations, denylist: Denylist) -> int:
    now = time.time()
    await denylist.add(
        [(jti, _ttl_ms(exp, now)) for jti, exp in revocations.tokens],
        [(sid, _ttl_ms(exp, now)) for sid, exp in revocations.sessions],
    )
    return len(revocations.tokens) + len(revocations.sessions)


async def reload_denylist(store: AuthStore, denylist: Denylist) -> Revocations:
    revocations = await store.revocations()
    await copy_revocations(revocations, denylist)
    await denylist.mark_loaded()
    return revocations


async def keep_denylist_loaded(
    store: AuthStore,
    denylist: Denylist,
    *,
    interval: float = 0.25,
    sync_every: float = 5.0,
    purge_every: float = 3600.0,
) -> None:
    last_purge = 0.0
    last_sync = time.monotonic()
    synced_to: datetime | None = None
    while True:
        try:
            if not await denylist.is_loaded():
                revocations = await reload_denylist(store, denylist)
                synced_to, last_sync = revocations.read_at, time.monotonic()
                log.info(
                    "denylist cache loaded",
                    extra={
                        "tokens": len(revocations.tokens),
                        "sessions": len(revocations.sessions),
                    },
                )
            elif time.monotonic() - last_sync >= sync_every:
                since = None if synced_to is None else synced_to - _SYNC_OVERLAP
                revocations = await store.revocations(since)
                await copy_revocations(revocations, denylist)
                synced_to, last_sync = revocations.read_at, time.monotonic()
            if time.monotonic() - last_purge > purge_every:
                await store.purge_expired()
                last_purge = time.monotonic()
        except (OSError, aioredis.RedisError, psycopg.Error) as exc:
            log.warning("denylist keeper cannot reach Redis or PostgreSQL: %s", exc)
        await asyncio.sleep(interval)
