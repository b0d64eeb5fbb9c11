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
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import cast

import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from common.db import Pool
from common.redis_keys import BoardKeys
from common.redis_values import encode_user_state, ranking_member, ranking_score
from leaderboard_service.events import script_args
from leaderboard_service.scripts import Scripts
from scoreboard.events.v1 import events_pb2

log = logging.getLogger("scoreboard.rebuild")
REBUILDS = Counter("scoreboard_ranking_rebuilds_total", "Rankings rebuilt from PostgreSQL.")
REBUILD_SECONDS = Histogram(
    "scoreboard_ranking_rebuild_seconds",
    "How long a rebuild took.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 40, 80, 160),
)
USER_REPAIRS = Counter(
    "scoreboard_ranking_user_repairs_total",
    "Users whose ranking entry was behind PostgreSQL and was replaced by their current state,"
    " by cause (dead_letter, check).",
    ["board", "cause"],
)

LOCK_MS = 60_000
CHUNK = 5_000
ATTEMPTS = 5
SNAPSHOT_SQL = (
    "SELECT s.user_id::text, s.total, s.version,"
    " (extract(epoch FROM s.reached_at) * 1000000)::bigint, u.banned, u.display_name"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.period = %s AND s.version > 0"
)
# user id, total, version, reached µs, banned, display name
SnapshotRow = tuple[str, int, int, int, bool, str]


def snapshot_rows(rows: Sequence[object]) -> list[SnapshotRow]:
    """Rows of SNAPSHOT_SQL, typed (psycopg returns the columns' Python types)."""
    return cast("list[SnapshotRow]", rows)


# Users' current states for a repair: SNAPSHOT_SQL's columns, then updated_at in µs (the commit
# time the repair publishes with). Callers add their own conditions.
STATES_SQL = (
    "SELECT s.user_id::text, s.total, s.version,"
    " (extract(epoch FROM s.reached_at) * 1000000)::bigint, u.banned, u.display_name,"
    " (extract(epoch FROM s.updated_at) * 1000000)::bigint"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.period = %s AND s.version > 0"
)
USERS_SQL = STATES_SQL + " AND s.user_id = ANY(%s::uuid[])"
# user id, total, version, reached µs, banned, display name, updated µs
StateRow = tuple[str, int, int, int, bool, str, int]
REPAIR_BATCH = 500


def state_rows(rows: Sequence[object]) -> list[StateRow]:
    """Rows of STATES_SQL, typed."""
    return cast("list[StateRow]", rows)


def _event(board: str, row: StateRow, period: int = 1) -> events_pb2.ScoreUpdated:
    """The ScoreUpdated event that would carry this state (absolute, like every event)."""
    user, total, version, reached_us, banned, name, updated_us = row
    event = events_pb2.ScoreUpdated(
        board_id=board,
        period=period,
        user_id=user,
        display_name=name,
        total=total,
        version=version,
        excluded=banned,
    )
    event.reached_time.FromMicroseconds(reached_us)
    event.commit_time.FromMicroseconds(updated_us)
    return event


async def apply_states(
    scripts: Scripts, keys: BoardKeys, rows: Sequence[StateRow], *, cause: str
) -> int:
    """Apply users' PostgreSQL states with the consumer's apply script: absolute state, written
    only over an older stored version, so an event applied meanwhile always wins and nothing
    goes backwards. Returns the users whose entry changed (a refused script raises
    ResponseError, e.g. for a stored state somebody wrote by hand: a rebuild's job)."""
    changed = 0
    for start in range(0, len(rows), REPAIR_BATCH):
        chunk = rows[start : start + REPAIR_BATCH]
        # No stream entries to acknowledge (no group), and no rank moves published.
        applied, _seq, _ready = await scripts.apply_events(
            keys,
            (script_args(_event(keys.board, row, keys.period), keys.asc) for row in chunk),
            now_us=time.time_ns() // 1000,
            rank_moves=False,
        )
        changed += int(applied)
    if changed:
        USER_REPAIRS.labels(keys.board, cause).inc(changed)
    return changed


async def repair_users(
    pool: Pool, scripts: Scripts, keys: BoardKeys, users: Collection[str], *, cause: str
) -> int:
    """Read these users' current state from PostgreSQL and apply it (see apply_states); users
    PostgreSQL does not rank on this board are left alone. Returns the users repaired."""
    if not users:
        return 0
    async with pool.connection() as conn:
        cur = await conn.execute(USERS_SQL, (keys.board, keys.period, sorted(users)))
        rows = state_rows(await cur.fetchall())
    if not rows:
        return 0
    return await apply_states(scripts, keys, rows, cause=cause)


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
            await cur.execute(SNAPSHOT_SQL, (keys.board, keys.period))
            while rows := await cur.fetchmany(CHUNK):
                ranked: dict[str, float] = {}
                states: dict[str, str] = {}
                for user, total, version, reached_us, banned, name in snapshot_rows(rows):
                    states[user] = encode_user_state(version, reached_us, banned, name)
                    if not banned:
                        ranked[ranking_member(user, reached_us)] = ranking_score(total, keys.asc)
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
        ranked_users, _seq = await scripts.of(keys).swap(
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
    pool: Pool, redis: aioredis.Redis, scripts: Scripts, keys: BoardKeys
) -> int:
    """Rebuild, or wait for another process's rebuild to finish. Returns the ranked users."""
    while True:
        try:
            return await rebuild(pool, redis, scripts, keys)
        except RebuildBusy:
            await asyncio.sleep(0.2)
            if await redis.exists(keys.ready) and not await redis.exists(keys.rebuild_lock):
                return int(await redis.zcard(keys.ranking))
