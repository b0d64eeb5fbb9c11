"""The personal-rank ticker over many subscribers, against a real Redis: a pass goes chunk by
chunk and yields to the event loop between chunks, so other streams of the process (WatchTop10,
moves) are not held up for the whole pass; it still finds every move, and a ranking that is not
ready stops it without pushing anything."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from common.redis_keys import BoardKeys, Keys
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings
from stream_service.rank_hub import RankHub
from tests.support.ranks import place_players
from tests.support.servers import new_prefix

CHUNK = 25
WATCHED = 200  # eight chunks


@pytest.fixture
async def redis(redis_url: str, run_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def _hub(redis: aioredis.Redis, run_prefix: str) -> tuple[RankHub, BoardKeys]:
    """A hub on a board of its own whose ranking is ready (as after a rebuild)."""
    keys = Keys(run_prefix + new_prefix()).board("default")
    await redis.set(keys.ready, "1")
    settings = RankSettings(tick_seconds=0, tick_chunk=CHUNK, min_interval_seconds=0.0)
    return RankHub(redis, keys, settings), keys


async def test_a_pass_yields_between_chunks_and_finds_every_move(
    redis: aioredis.Redis, run_prefix: str
) -> None:
    hub, board = await _hub(redis, run_prefix)
    users = await place_players(redis, board, [1_000 + i for i in range(WATCHED)])
    watches = [await hub.watch(user) for user in users]
    for watch in watches:
        first = await watch.next()
        assert first is not None and first.reason == pb.RANK_REASON_INITIAL

    # What another task of the process sees while a pass runs: the ticker's command count
    # after each of its turns. A pass that decodes everything in one go shows only 0 and all.
    seen: list[int] = []
    done = False

    async def neighbour() -> None:
        while not done:
            seen.append(hub.ticker_commands)
            await asyncio.sleep(0)

    await place_players(redis, board, [10_000 + i for i in range(WATCHED)])  # all drop 200
    running = asyncio.create_task(neighbour())
    try:
        assert await hub.tick() == WATCHED
    finally:
        done = True
        await running
    steps = sorted(set(seen) - {0, hub.ticker_commands})
    assert len(steps) >= WATCHED // CHUNK - 2, f"the pass yielded only at {steps}"

    for watch in watches:
        moved = await asyncio.wait_for(watch.next(), 1)
        assert moved is not None
        assert moved.reason in (pb.RANK_REASON_MOVED, pb.RANK_REASON_THRESHOLD)
        assert moved.rank > WATCHED
    hub.close()


async def test_a_ranking_not_ready_stops_the_pass(redis: aioredis.Redis, run_prefix: str) -> None:
    hub, board = await _hub(redis, run_prefix)
    users = await place_players(redis, board, [500 + i for i in range(60)])
    watches = [await hub.watch(user) for user in users]
    for watch in watches:
        assert await watch.next() is not None
    await place_players(redis, board, [9_000 + i for i in range(60)])  # all drop 60
    await redis.delete(board.ready)  # a rebuild under way
    assert await hub.tick() == 60
    for watch in watches:
        with contextlib.suppress(TimeoutError):
            update = await asyncio.wait_for(watch.next(), 0.2)
            raise AssertionError(f"an update without a ready ranking: {update}")
    hub.close()
