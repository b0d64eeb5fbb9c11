"""Competition rank for a total: 1 + the number of ranked users with a strictly better total
(higher; lower on an `asc` board), on the board's period (equal totals share a rank: 1, 2, 2, 4).

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
from dataclasses import dataclass

import psycopg
import redis.asyncio as aioredis

from common.db import Conn
from common.redis_keys import Keys
from common.redis_values import above

log = logging.getLogger("scoreboard.score")

PG_RANKS_SQL = (
    "SELECT (SELECT count(*) FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.period = %s AND s.version > 0 AND NOT u.banned"
    " AND s.total > t.total)"
    " FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(total, n) ORDER BY t.n"
)
# A lower-is-better board: better is lower.
PG_RANKS_ASC_SQL = PG_RANKS_SQL.replace("s.total > t.total", "s.total < t.total")


@dataclass(frozen=True)
class RankOf:
    """A total on a board's period (`asc`: the board ranks lower totals first)."""

    board: str
    period: int
    asc: bool
    total: int


class RankReader:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, timeout: float = 1.0, budget: float = 0.25
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout = timeout
        self._budget_ms = max(1, int(budget * 1000))

    async def ranks_for(
        self, conn: Conn, board: str, totals: list[int], *, period: int = 1, asc: bool = False
    ) -> list[int]:
        """The competition rank of each total on one board's period."""
        return await self.ranks_of(conn, [RankOf(board, period, asc, t) for t in totals])

    async def ranks_of(self, conn: Conn, items: list[RankOf]) -> list[int]:
        """The competition rank of each total, on its own board and period: one Redis round
        trip for them all, or one PostgreSQL query per board whose ranking is not ready."""
        boards = sorted({(i.board, i.period, i.asc) for i in items})
        ready: dict[tuple[str, int, bool], bool] = dict.fromkeys(boards, False)
        higher: list[int] = [0] * len(items)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for board, period, asc in boards:
                        pipe.exists(self._keys.board(board, period, asc=asc).ready)
                    for item in items:
                        keys = self._keys.board(item.board, item.period, asc=item.asc)
                        pipe.zcount(keys.ranking, "-inf", above(item.total, item.asc))
                    replies = await pipe.execute()
            ready = {b: bool(r) for b, r in zip(boards, replies, strict=False)}
            higher = [int(h) for h in replies[len(boards) :]]
        except (OSError, aioredis.RedisError, TimeoutError) as exc:
            log.info("rank read from PostgreSQL: Redis did not answer (%s)", type(exc).__name__)
        ranks = [h + 1 for h in higher]
        for board, period, asc in boards:
            if ready[(board, period, asc)]:
                continue
            index = [
                n for n, i in enumerate(items) if (i.board, i.period, i.asc) == (board, period, asc)
            ]
            counted = await self._count(conn, board, period, asc, [items[n].total for n in index])
            for n, rank in zip(index, counted, strict=True):
                ranks[n] = rank
        return ranks

    async def _count(
        self, conn: Conn, board: str, period: int, asc: bool, totals: list[int]
    ) -> list[int]:
        try:
            async with conn.transaction():  # a savepoint: a cancelled count leaves no trace
                await conn.execute(f"SET LOCAL statement_timeout = {self._budget_ms}")
                cur = await conn.execute(
                    PG_RANKS_ASC_SQL if asc else PG_RANKS_SQL, (board, period, totals)
                )
                ranks = [int(row[0]) + 1 for row in await cur.fetchall()]  # type: ignore[call-overload]
                await conn.execute("SET LOCAL statement_timeout TO DEFAULT")
        except psycopg.errors.QueryCanceled:
            log.warning("rank unknown: counting it in PostgreSQL took too long")
            return [0] * len(totals)
        return ranks
