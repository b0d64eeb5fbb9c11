"""Rebuilding the ranking from PostgreSQL (DESIGN decision 1): into temporary keys, then one
script merges users that changed meanwhile and swaps the keys in atomically. Queries are answered
from PostgreSQL until the ranking is ready again.

Why nothing is lost: the lock is taken (and the touched set emptied) before the snapshot is
read, and the apply script records every user it changes while the lock exists (the touched set).
An event missing from the snapshot committed after the snapshot began, so it reached the stream,
and Redis, after that: its user is touched, and the swap keeps the newer of the two versions.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from common.db import Pool
from common.redis_keys import BoardKeys
from common.redis_values import encode_user_state, ranking_member, ranking_score
from leaderboard_service.scripts import Scripts

log = logging.getLogger("scoreboard.rebuild")
REBUILDS = Counter("scoreboard_ranking_rebuilds_total", "Rankings rebuilt from PostgreSQL.")
REBUILD_SECONDS = Histogram(
    "scoreboard_ranking_rebuild_seconds",
    "How long a rebuild took.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 40, 80, 160),
)

LOCK_MS = 60_000
CHUNK = 5_000
ATTEMPTS = 5
SNAPSHOT_SQL = (
    "SELECT s.user_id::text, s.total, s.version,"
    " (extract(epoch FROM s.reached_at) * 1000000)::bigint, u.banned, u.display_name"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.version > 0"
)
# user id, total, version, reached µs, banned, display name
SnapshotRow = tuple[str, int, int, int, bool, str]


def snapshot_rows(rows: Sequence[object]) -> list[SnapshotRow]:
    """Rows of SNAPSHOT_SQL, typed (psycopg returns the columns' Python types)."""
    return cast("list[SnapshotRow]", rows)


# Test hook: awaited after the rebuilt keys are written, just before the swap.
BeforeSwap = Callable[[], Awaitable[None]]


class RebuildBusy(Exception):
    """Another process holds the rebuild lock."""


async def rebuild(
    pool: Pool,
    redis: aioredis.Redis,
    scripts: Scripts,
    keys: BoardKeys,
    *,
    before_swap: BeforeSwap | None = None,
) -> int:
    """Rebuild one board; return the number of ranked users. Starts over when Redis was wiped
    while it ran; RebuildBusy when another process is rebuilding."""
    for _ in range(ATTEMPTS):
        started = time.monotonic()
        result = await _rebuild_once(pool, redis, scripts, keys, before_swap)
        if result >= 0:
            REBUILDS.inc()
            REBUILD_SECONDS.observe(time.monotonic() - started)
            log.info(
                "ranking rebuilt",
                extra={
                    "board": keys.board,
                    "users": result,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            return result
        log.warning("rebuild lost its keys or lock; starting over", extra={"board": keys.board})
    raise RuntimeError(f"rebuild did not complete after {ATTEMPTS} attempts")


async def _write_snapshot(pool: Pool, redis: aioredis.Redis, keys: BoardKeys) -> int:
    """Copy PostgreSQL's ranking into the temporary keys; return the users written."""
    count = 0
    async with pool.connection() as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        async with conn.cursor(name="ranking_snapshot") as cur:
            await cur.execute(SNAPSHOT_SQL, (keys.board,))
            while rows := await cur.fetchmany(CHUNK):
                ranked: dict[str, float] = {}
                states: dict[str, str] = {}
                for user, total, version, reached_us, banned, name in snapshot_rows(rows):
                    states[user] = encode_user_state(version, reached_us, banned, name)
                    if not banned:
                        ranked[ranking_member(user, reached_us)] = ranking_score(total)
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.hset(keys.rebuild_users, mapping=states)  # type: ignore[arg-type]
                    if ranked:
                        pipe.zadd(keys.rebuild_ranking, ranked)
                    pipe.pexpire(keys.rebuild_lock, LOCK_MS)
                    await pipe.execute()
                count += len(rows)
        await conn.rollback()
    return count


async def _rebuild_once(
    pool: Pool,
    redis: aioredis.Redis,
    scripts: Scripts,
    keys: BoardKeys,
    before_swap: BeforeSwap | None,
) -> int:
    token = secrets.token_hex(8)
    if not await redis.set(keys.rebuild_lock, token, nx=True, px=LOCK_MS):
        raise RebuildBusy(keys.board)
    try:
        # Leftovers of an interrupted rebuild go; the touched set starts empty with the lock.
        await redis.unlink(keys.rebuild_ranking, keys.rebuild_users, keys.touched)
        count = await _write_snapshot(pool, redis, keys)
        if before_swap is not None:
            await before_swap()
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
            await redis.unlink(keys.rebuild_lock, keys.rebuild_ranking, keys.rebuild_users)
        raise
    return int(ranked_users)


async def rebuild_when_free(
    pool: Pool,
    redis: aioredis.Redis,
    scripts: Scripts,
    keys: BoardKeys,
    *,
    before_swap: BeforeSwap | None = None,
) -> int:
    """Rebuild, or wait for another process's rebuild to finish. Returns the ranked users."""
    while True:
        try:
            return await rebuild(pool, redis, scripts, keys, before_swap=before_swap)
        except RebuildBusy:
            await asyncio.sleep(0.2)
            if await redis.exists(keys.ready) and not await redis.exists(keys.rebuild_lock):
                return int(await redis.zcard(keys.ranking))
