"""What the specification's monitoring list names beyond latency: each process's database pool
(connections open, idle, requests waiting, the limit) and the Redis server's keyspace hits and
misses (the hit rate), read from a real stack's /metrics while it runs."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from common.config import DatabaseSettings
from common.db import open_pool
from tests.common.test_metrics import Samples, present, scrape, value
from tests.conftest import StackFactory
from tests.support.servers import wait_for
from tests.support.stack import Stack


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory() as stack:
        yield stack


async def test_every_service_pool_is_exported(stack: Stack) -> None:
    samples = await scrape(stack.edge_url + "/metrics")
    for pool in ("test-auth", "test-score", "test-leaderboard"):
        assert value(samples, "scoreboard_db_pool_max_connections", pool=pool) > 0, pool
        assert value(samples, "scoreboard_db_pool_connections", pool=pool) >= 1, pool
        assert present(samples, "scoreboard_db_pool_available")
        assert value(samples, "scoreboard_db_pool_waiting", pool=pool) == 0, pool


async def test_an_exhausted_pool_shows_waiting_requests(stack: Stack) -> None:
    name = f"test-exhausted-{secrets.token_hex(3)}"
    settings = DatabaseSettings(stack.config.database_url, min_connections=2, max_connections=2)
    pool = await open_pool(settings, name=name)
    url = stack.edge_url + "/metrics"
    try:
        held = [await pool.getconn(), await pool.getconn()]
        waiter = asyncio.create_task(pool.getconn(timeout=30))

        async def exhausted() -> Samples | None:
            samples = await scrape(url)
            waiting = value(samples, "scoreboard_db_pool_waiting", pool=name)
            return samples if waiting == 1 else None

        samples = await wait_for(exhausted)
        assert samples is not None
        assert value(samples, "scoreboard_db_pool_available", pool=name) == 0
        assert value(samples, "scoreboard_db_pool_connections", pool=name) == 2
        assert value(samples, "scoreboard_db_pool_max_connections", pool=name) == 2
        await pool.putconn(held.pop())
        await pool.putconn(await waiter)
        await pool.putconn(held.pop())
        after = await scrape(url)
        assert value(after, "scoreboard_db_pool_waiting", pool=name) == 0
        assert value(after, "scoreboard_db_pool_available", pool=name) == 2
    finally:
        await pool.close()
    # A closed pool is no longer exported.
    assert not any(
        n.startswith("scoreboard_db_pool") and ("pool", name) in labels
        for n, labels in await scrape(url)
    )


async def test_redis_hits_and_misses_follow_lookups(stack: Stack) -> None:
    url = stack.edge_url + "/metrics"

    async def reading() -> Samples | None:
        samples = await scrape(url)
        return samples if present(samples, "scoreboard_redis_keyspace_misses_total") else None

    before = await wait_for(reading)
    assert before is not None
    key = f"{stack.config.prefix}pool-metrics-test"
    for _ in range(5):
        assert await stack.redis.get(f"{key}:missing") is None
    await stack.redis.set(key, "1", ex=60)
    assert await stack.redis.get(key) is not None

    async def moved() -> Samples | None:
        samples = await scrape(url)
        misses = value(samples, "scoreboard_redis_keyspace_misses_total")
        hits = value(samples, "scoreboard_redis_keyspace_hits_total")
        grew = misses >= value(before, "scoreboard_redis_keyspace_misses_total") + 5 and (
            hits > value(before, "scoreboard_redis_keyspace_hits_total")
        )
        return samples if grew else None

    await wait_for(moved)
