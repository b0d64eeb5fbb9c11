"""Competition rank for a total: 1 + the number of ranked users with a strictly higher total
(equal totals share a rank: 1, 2, 2, 4).

Read from the Redis ranking in one round trip. While the ranking is being rebuilt (not ready),
when Redis is unreachable or slower than the timeout, counted in PostgreSQL instead: exact, but
a count over the board, so it gets a time budget of its own (the caller holds row locks). A
rank that cannot be counted within it is reported as 0 (unknown) rather than holding up every
completion behind it.

Redis lags PostgreSQL by the relay's delay: the rank counts the changes of other users that have
reached the ranking. The caller's own previous entry never counts (its total is not higher).
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
import redis.asyncio as aioredis

from common.db import Conn
from common.redis_keys import Keys
from common.redis_values import above

log = logging.getLogger("scoreboard.score")

PG_RANKS_SQL = (
    "SELECT (SELECT count(*) FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.version > 0 AND NOT u.banned AND s.total > t.total)"
    " FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(total, n) ORDER BY t.n"
)


class RankReader:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, timeout: float = 1.0, budget: float = 0.25
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout = timeout
        self._budget_ms = max(1, int(budget * 1000))

    async def ranks_for(self, conn: Conn, board: str, totals: list[int]) -> list[int]:
        """The competition rank of each total: one Redis round trip, or one PostgreSQL query."""
        board_keys = self._keys.board(board)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.exists(board_keys.ready)
                    for total in totals:
                        pipe.zcount(board_keys.ranking, "-inf", above(total))
                    ready, *higher = await pipe.execute()
            if ready:
                return [int(h) + 1 for h in higher]
        except (OSError, aioredis.RedisError, TimeoutError) as exc:
            log.info("rank read from PostgreSQL: Redis did not answer (%s)", type(exc).__name__)
        try:
            async with conn.transaction():  # a savepoint: a cancelled count leaves no trace
                await conn.execute(f"SET LOCAL statement_timeout = {self._budget_ms}")
                cur = await conn.execute(PG_RANKS_SQL, (board, totals))
                ranks = [int(row[0]) + 1 for row in await cur.fetchall()]  # type: ignore[call-overload]
                await conn.execute("SET LOCAL statement_timeout TO DEFAULT")
        except psycopg.errors.QueryCanceled:
            log.warning("rank unknown: counting it in PostgreSQL took too long")
            return [0] * len(totals)
        return ranks
