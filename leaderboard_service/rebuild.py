"""Rebuilding the ranking from PostgreSQL (DESIGN decision 1): into temporary keys, then one
script merges users that changed meanwhile and swaps the keys in atomically. Queries are answered
from PostgreSQL until the ranking is ready again."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import redis.asyncio as aioredis
from prometheus_client import Counter

from common.db import Pool
from common.keys import BoardKeys
from leaderboard_service.events import reached_key
from leaderboard_service.scripts import Scripts

log = logging.getLogger("scoreboard.rebuild")
REBUILDS = Counter("scoreboard_ranking_rebuilds_total", "Rankings rebuilt from PostgreSQL.")

LOCK_MS = 60_000
CHUNK = 5_000
SNAPSHOT_SQL = (
    "SELECT s.user_id::text, s.total, s.version,"
    " (extract(epoch FROM s.reached_at) * 1000000)::bigint, u.banned, u.display_name"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.version > 0"
)


class RebuildBusy(Exception):
    """Another process holds the rebuild lock."""


async def rebuild(pool: Pool, redis: aioredis.Redis, scripts: Scripts, keys: BoardKeys) -> int:
    """Rebuild one board; return the number of ranked users. Retries when Redis was wiped
    while it ran."""
    for _ in range(5):
        result = await _rebuild_once(pool, redis, scripts, keys)
        if result >= 0:
            REBUILDS.inc()
            return result
        log.warning("rebuild lost its temporary keys; starting over", extra={"board": keys.board})
    raise RuntimeError("rebuild did not complete after 5 attempts")


async def _rebuild_once(
    pool: Pool, redis: aioredis.Redis, scripts: Scripts, keys: BoardKeys
) -> int:
    token = secrets.token_hex(8)
    if not await redis.set(keys.rebuild_lock, token, nx=True, px=LOCK_MS):
        raise RebuildBusy(keys.board)
    started = time.monotonic()
    try:
        await redis.delete(keys.touched, keys.rebuild_ranking, keys.rebuild_users)
        count = 0
        async with pool.connection() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            async with conn.cursor(name="ranking_snapshot") as cur:
                await cur.execute(SNAPSHOT_SQL, (keys.board,))
                while rows := await cur.fetchmany(CHUNK):
                    async with redis.pipeline(transaction=False) as pipe:
                        ranked: dict[str, float] = {}
                        states: dict[str, str] = {}
                        for user, total, version, reached_us, banned, name in rows:
                            reached = reached_key(int(reached_us))  # type: ignore[call-overload]
                            states[str(user)] = f"{version}|{reached}|{1 if banned else 0}|{name}"
                            if not banned:
                                ranked[f"{reached}:{user}"] = -int(total)  # type: ignore[call-overload]
                        pipe.hset(keys.rebuild_users, mapping=states)  # type: ignore[arg-type]
                        if ranked:
                            pipe.zadd(keys.rebuild_ranking, ranked)
                        pipe.pexpire(keys.rebuild_lock, LOCK_MS)
                        await pipe.execute()
                    count += len(rows)
            await conn.rollback()
        ranked_users, _seq = await scripts.swap(
            keys=[
                keys.rebuild_ranking,
                keys.rebuild_users,
                keys.ranking,
                keys.users,
                keys.touched,
                keys.top,
                keys.meta,
                keys.ready,
                keys.rebuild_lock,
            ],
            args=[token, keys.channel, str(time.time_ns() // 1000), count],
        )
    except BaseException:
        # Leave no half state: a later attempt starts clean.
        if await redis.get(keys.rebuild_lock) in (token, token.encode()):
            await redis.delete(keys.rebuild_lock)
        raise
    if int(ranked_users) < 0:
        return -1
    log.info(
        "ranking rebuilt",
        extra={
            "board": keys.board,
            "users": int(ranked_users),
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    return int(ranked_users)


async def rebuild_when_free(
    pool: Pool, redis: aioredis.Redis, scripts: Scripts, keys: BoardKeys
) -> int | None:
    """Rebuild, or wait for another process's rebuild to finish. None when it did elsewhere."""
    while True:
        try:
            return await rebuild(pool, redis, scripts, keys)
        except RebuildBusy:
            await asyncio.sleep(0.2)
            if await redis.exists(keys.ready) and not await redis.exists(keys.rebuild_lock):
                return None
