"""Comparing the Redis ranking with PostgreSQL.

`compare` is exact: every user's version, time reached, exclusion and total, plus members and
states PostgreSQL does not account for. Events in flight show up as differences, so it is meant
for a quiet moment or to be repeated (a real drift stays).

The periodic checks are cheap and report only certain drift, so they can run under load:
`count_check` counts ranked users on both sides (Redis first: every user it ranks is already in
PostgreSQL), `sample_check` compares PostgreSQL's top users with Redis where both hold the
same version (so the same state), and `version_check` compares the versions of the users whose
score changed in a window that ends a grace period ago: one that Redis holds an older version
of (or none) by then lost an event after it was committed (dead-lettered, or an acknowledged
write lost in a Redis failover).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import redis.asyncio as aioredis

from common.db import Pool
from common.redis_keys import BoardKeys
from common.redis_values import (
    MalformedValue,
    parse_user_state,
    ranking_member,
    ranking_score,
    reached_key,
    state_head,
)
from leaderboard_service.rebuild import (
    SNAPSHOT_SQL,
    STATES_SQL,
    StateRow,
    snapshot_rows,
    state_rows,
)
from leaderboard_service.scripts import Scripts

CHUNK = 2_000
RANKED_COUNT_SQL = (
    "SELECT count(*) FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.period = %s AND s.version > 0 AND NOT u.banned"
)
TOP_SQL = (
    "SELECT s.user_id::text, s.total, s.version,"
    " (extract(epoch FROM s.reached_at) * 1000000)::bigint"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.period = %s AND s.version > 0 AND NOT u.banned"
    " ORDER BY s.total DESC, s.reached_at, s.user_id LIMIT %s"
)
# Users whose score changed in [since, until): a range scan on user_scores_updated.
CHANGED_SQL = STATES_SQL + " AND s.updated_at >= %s AND s.updated_at < %s"
CLOCK_SQL = "SELECT clock_timestamp() - make_interval(secs => %s)"


@dataclass(frozen=True)
class Drift:
    users_in_database: int
    users_in_ranking: int
    # Users whose Redis entry differs from PostgreSQL, plus entries PostgreSQL does not have.
    mismatched: int


async def compare(pool: Pool, redis: aioredis.Redis, scripts: Scripts, keys: BoardKeys) -> Drift:
    ranked_in_db = 0
    mismatched = 0
    members_accounted = 0
    states_accounted = 0
    async with pool.connection() as conn:
        async with conn.cursor(name="reconcile") as cur:
            await cur.execute(SNAPSHOT_SQL, (keys.board, keys.period))
            while rows := await cur.fetchmany(CHUNK):
                args: list[str | int] = [len(rows)]
                for user, total, version, reached_us, banned, _name in snapshot_rows(rows):
                    args += [
                        user,
                        state_head(version, reached_us, banned),
                        reached_key(reached_us),
                        "" if banned else str(ranking_score(total, keys.asc)),
                    ]
                    if not banned:
                        ranked_in_db += 1
                # One script per chunk: each user's state and member are read at one instant.
                differ, members, states = await scripts.of(keys).compare(
                    keys=[keys.ranking, keys.users], args=args
                )
                mismatched += int(differ)
                members_accounted += int(members)
                states_accounted += int(states)
        await conn.rollback()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zcard(keys.ranking)
        pipe.hlen(keys.users)
        in_ranking, in_states = (int(v) for v in await pipe.execute())
    extra = max(0, in_ranking - members_accounted) + max(0, in_states - states_accounted)
    return Drift(ranked_in_db, in_ranking, mismatched + extra)


async def count_check(pool: Pool, redis: aioredis.Redis, keys: BoardKeys) -> tuple[int, int]:
    """(ranked users in Redis, then in PostgreSQL). Read in this order, Redis can only lag:
    a ranking larger than PostgreSQL's is drift for sure."""
    in_redis = int(await redis.zcard(keys.ranking))
    async with pool.connection() as conn:
        cur = await conn.execute(RANKED_COUNT_SQL, (keys.board, keys.period))
        row = await cur.fetchone()
    return in_redis, int(row[0]) if row else 0  # type: ignore[call-overload]


async def sample_check(pool: Pool, redis: aioredis.Redis, keys: BoardKeys, size: int = 100) -> int:
    """Users among PostgreSQL's top `size` whose Redis entry has the same version but another
    state: certain drift, whatever is in flight."""
    async with pool.connection() as conn:
        top_sql = TOP_SQL.replace("s.total DESC", "s.total") if keys.asc else TOP_SQL
        cur = await conn.execute(top_sql, (keys.board, keys.period, size))
        rows = await cur.fetchall()
    if not rows:
        return 0
    # user id, total, version, reached µs
    top = cast("list[tuple[str, int, int, int]]", rows)
    async with redis.pipeline(transaction=True) as pipe:
        for user, _t, _v, reached_us in top:
            pipe.hget(keys.users, user)
            pipe.zscore(keys.ranking, ranking_member(user, reached_us))
        replies = await pipe.execute()
    wrong = 0
    for index, (_u, total, version, reached_us) in enumerate(top):
        raw, score = replies[2 * index], replies[2 * index + 1]
        if raw is None:
            continue  # not applied yet: in flight
        try:
            state = parse_user_state(raw)
        except MalformedValue:
            wrong += 1  # unreadable: written by hand
            continue
        if state.version != version:
            continue  # not applied yet (or already newer): in flight
        expected = float(ranking_score(total, keys.asc))
        if state.reached_us != reached_us or state.excluded or score != expected:
            wrong += 1
    return wrong


async def database_clock(pool: Pool, minus_seconds: float = 0.0) -> datetime:
    """PostgreSQL's clock (the one updated_at is written with), minus `minus_seconds`."""
    async with pool.connection() as conn:
        cur = await conn.execute(CLOCK_SQL, (minus_seconds,))
        row = await cur.fetchone()
    moment = row[0] if row else None
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a timestamp from PostgreSQL, got {moment!r}")
    return moment


@dataclass(frozen=True)
class VersionCheck:
    checked: int  # users whose score changed in the window
    # PostgreSQL's state of those Redis holds an older version of, or no (readable) state for.
    behind: list[StateRow]


def _behind(stored: bytes | str | None, version: int) -> bool:
    if stored is None:
        return True
    try:
        return parse_user_state(stored).version < version
    except MalformedValue:
        return True  # written by hand; applying over it is refused, so a rebuild repairs it


async def version_check(
    pool: Pool, redis: aioredis.Redis, keys: BoardKeys, since: datetime, until: datetime
) -> VersionCheck:
    """Compare the Redis version of every user whose score changed in [since, until) with
    PostgreSQL's. PostgreSQL is read first, so Redis can only be newer than what was read: a
    user found behind lost an event (when `until` lies beyond the events in flight)."""
    checked = 0
    behind: list[StateRow] = []
    async with pool.connection() as conn:
        async with conn.cursor(name="version_check") as cur:
            await cur.execute(CHANGED_SQL, (keys.board, keys.period, since, until))
            while rows := await cur.fetchmany(CHUNK):
                changed = state_rows(rows)
                checked += len(changed)
                stored: list[bytes | str | None] = await redis.hmget(
                    keys.users, [row[0] for row in changed]
                )
                behind += [
                    row for row, raw in zip(changed, stored, strict=True) if _behind(raw, row[2])
                ]
        await conn.rollback()
    return VersionCheck(checked, behind)
