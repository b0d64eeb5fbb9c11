"""Comparing the Redis ranking with PostgreSQL: every user's version, total and exclusion."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from common.db import Pool
from common.keys import BoardKeys
from leaderboard_service.events import reached_key
from leaderboard_service.rebuild import SNAPSHOT_SQL
from leaderboard_service.scripts import text

CHUNK = 2_000


@dataclass(frozen=True)
class Drift:
    users_in_database: int
    users_in_ranking: int
    mismatched: int


async def compare(pool: Pool, redis: aioredis.Redis, keys: BoardKeys) -> Drift:
    """Exact comparison. Events in flight show up as mismatches, so run it when quiet or repeat
    it: a real drift stays."""
    ranked_in_db = 0
    mismatched = 0
    # Members of the ranking that PostgreSQL accounts for; any other member is extra.
    accounted = 0
    async with pool.connection() as conn:
        async with conn.cursor(name="reconcile") as cur:
            await cur.execute(SNAPSHOT_SQL, (keys.board,))
            while rows := await cur.fetchmany(CHUNK):
                async with redis.pipeline(transaction=False) as pipe:
                    for user, _t, _v, reached_us, _b, _n in rows:
                        member = f"{reached_key(int(reached_us))}:{user}"  # type: ignore[call-overload]
                        pipe.hget(keys.users, str(user))
                        pipe.zscore(keys.ranking, member)
                    replies = await pipe.execute()
                for index, (_u, total, version, _r, banned, _n) in enumerate(rows):
                    state, score = replies[2 * index], replies[2 * index + 1]
                    if score is not None:
                        accounted += 1
                    if not banned:
                        ranked_in_db += 1
                    stored_version = text(state).split("|", 1)[0] if state is not None else ""
                    expected = None if banned else float(-int(total))  # type: ignore[call-overload]
                    if stored_version != str(version) or score != expected:
                        mismatched += 1
        await conn.rollback()
    in_ranking = int(await redis.zcard(keys.ranking))
    return Drift(ranked_in_db, in_ranking, mismatched + (in_ranking - accounted))


async def quick_check(pool: Pool, redis: aioredis.Redis, keys: BoardKeys) -> tuple[int, int]:
    """Cheap periodic check: ranked users in PostgreSQL and in Redis."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM user_scores s JOIN users u ON u.id = s.user_id"
            " WHERE s.board_id = %s AND s.version > 0 AND NOT u.banned",
            (keys.board,),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0, int(await redis.zcard(keys.ranking))  # type: ignore[call-overload]
