"""Top-10 snapshots stored and published the way leaderboard_service does, for tests of the live
path (stream_service's WatchTop10 and the edge's /ws) that drive the snapshots themselves."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from common.redis_values import SEQ_FIELD, Entry, encode_entries
from tests.support.servers import wait_for
from tests.support.stack import Stack

# What leaderboard_service's Lua does when the top 10 changed: next sequence, store, publish
# (the formats are common/redis_values.py's).
_PUBLISH = """
local seq
if redis.call('HEXISTS', KEYS[2], 'seq') == 1 then
  seq = string.format('%d', redis.call('HINCRBY', KEYS[2], 'seq', 1))
else
  seq = ARGV[2]
  redis.call('HSET', KEYS[2], 'seq', seq)
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'ts', ARGV[2])
if ARGV[4] == '1' then
  redis.call('PUBLISH', ARGV[3],
    '{"seq":' .. seq .. ',"ts":' .. ARGV[2] .. ',"entries":' .. ARGV[1] .. '}')
end
return seq
"""


def entries(*scores: int, name_size: int = 8) -> list[Entry]:
    """A top 10 of made-up users with these scores (descending order is the caller's)."""
    return [
        Entry(rank, f"00000000-0000-4000-8000-{rank:012d}", f"p{rank}".ljust(name_size, "x"), score)
        for rank, score in enumerate(scores, start=1)
    ]


async def publish(
    redis: aioredis.Redis, stack: Stack, rows: Sequence[Entry], *, announce: bool = True
) -> int:
    """Store and publish a top 10 exactly as leaderboard_service does (a wiped counter restarts
    at the current time in µs); returns its sequence. announce=False stores it without the PUBLISH,
    like a change published while a subscriber was disconnected."""
    board = stack.keys.board("default")
    seq = await redis.eval(
        _PUBLISH,
        2,
        board.top,
        board.meta,
        encode_entries(rows),
        str(int(time.time() * 1_000_000)),
        board.channel,
        "1" if announce else "0",
    )
    return int(seq)


async def settled(stack: Stack) -> None:
    """Wait until leaderboard_service has built the ranking at start (and published its first
    top 10), so the snapshots a test publishes itself are not raced by that rebuild."""
    board = stack.keys.board("default")

    async def ready() -> bool:
        return bool(await stack.redis.exists(board.ready)) and bool(
            await stack.redis.hexists(board.meta, SEQ_FIELD)
        )

    await wait_for(ready, timeout=30)
