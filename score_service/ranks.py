"""Competition rank for a total: 1 + the number of ranked users with a strictly higher total
(equal totals share a rank: 1, 2, 2, 4).

Read from the Redis ranking in one round trip. While the ranking is being rebuilt (not ready),
when Redis is unreachable or slower than the timeout, counted in PostgreSQL instead (slower,
still exact). The caller holds the user's row lock, hence the short timeout.

Redis lags PostgreSQL by the relay's delay: the rank counts the changes of other users that have
reached the ranking. The caller's own previous entry never counts (its total is not higher).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from common.db import Conn
from common.keys import Keys

log = logging.getLogger("scoreboard.score")

PG_RANK_SQL = (
    "SELECT count(*) FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.version > 0 AND NOT u.banned AND s.total > %s"
)


class RankReader:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, timeout: float = 0.25) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout = timeout

    async def rank_for(self, conn: Conn, board: str, total: int) -> int:
        higher = await self._redis_higher(board, total)
        if higher is not None:
            return higher + 1
        cur = await conn.execute(PG_RANK_SQL, (board, total))
        row = await cur.fetchone()
        return int(row[0]) + 1 if row else 1  # type: ignore[call-overload]

    async def _redis_higher(self, board: str, total: int) -> int | None:
        """Users with a higher total in the Redis ranking; None when it cannot answer."""
        board_keys = self._keys.board(board)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.exists(board_keys.ready)
                    pipe.zcount(board_keys.ranking, "-inf", f"({-total}")
                    ready, higher = await pipe.execute()
        except (OSError, aioredis.RedisError, TimeoutError) as exc:
            log.info("rank read from PostgreSQL: Redis did not answer (%s)", type(exc).__name__)
            return None
        return int(higher) if ready else None
