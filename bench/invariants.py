"""After a run: nothing lost. Every committed change reached the ranking, ledger and totals agree,
and the Redis ranking equals PostgreSQL's."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psycopg
import redis.asyncio as aioredis

from common.redis_keys import Keys
from leaderboard_service.stream_metrics import undelivered

# Per user, board and period (DESIGN decision 11): total == SUM(points), version == rows.
LEDGER_SQL = """
SELECT count(*) FROM user_scores s
LEFT JOIN (SELECT board_id, period, user_id, sum(points) AS points, count(*) AS rows
           FROM user_actions GROUP BY board_id, period, user_id) l
     USING (board_id, period, user_id)
WHERE s.total <> coalesce(l.points, 0) OR s.version <> coalesce(l.rows, 0)
"""


@dataclass(frozen=True)
class Settled:
    outbox_rows: int
    pending_events: int
    seconds: float


async def wait_settled(
    database_url: str, redis: aioredis.Redis, keys: Keys, board: str, timeout: float = 120
) -> Settled:
    """Wait until the outbox is empty and the consumer group has nothing pending or unread."""
    started = time.monotonic()
    board_keys = keys.board(board)
    while True:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute("SELECT count(*) FROM outbox")
            row = await cur.fetchone()
            outbox = int(row[0]) if row else 0
        pending = await _unfinished(redis, board_keys.events)
        if (outbox == 0 and pending == 0) or time.monotonic() - started > timeout:
            return Settled(outbox, pending, round(time.monotonic() - started, 2))
        await asyncio.sleep(0.2)


async def _unfinished(redis: aioredis.Redis, stream: str) -> int:
    try:
        groups = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:
        return 0
    total = 0
    for group in groups:
        total += int(group.get("pending", 0))
        total += (await undelivered(redis, stream, group))[0]
    return total


async def ledger_mismatches(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(LEDGER_SQL)
        row = await cur.fetchone()
    return int(row[0]) if row else -1
