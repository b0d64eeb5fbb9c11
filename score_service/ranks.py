"""Competition rank for a total: 1 + the number of ranked users with a strictly higher total.

Read from the Redis ranking in one round trip; while the ranking is being rebuilt (not ready),
counted in PostgreSQL instead.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from common.db import Conn
from common.keys import Keys

PG_RANK_SQL = (
    "SELECT count(*) FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.version > 0 AND NOT u.banned AND s.total > %s"
)


class RankReader:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def rank_for(self, conn: Conn, board: str, total: int) -> int:
        board_keys = self._keys.board(board)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(board_keys.ready)
                pipe.zcount(board_keys.ranking, "-inf", f"({-total}")
                ready, higher = await pipe.execute()
            if ready:
                return int(higher) + 1
        except (OSError, aioredis.RedisError):
            pass  # Redis down: the database answers (slower, still exact).
        cur = await conn.execute(PG_RANK_SQL, (board, total))
        row = await cur.fetchone()
        return int(row[0]) + 1 if row else 1  # type: ignore[call-overload]
