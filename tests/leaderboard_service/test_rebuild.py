"""Rebuilding the ranking from PostgreSQL: after FLUSHALL under load, after Redis restarts empty,
when Redis is wiped in the middle of a rebuild, with events arriving during it, and at the
start of a new deployment (queries answered from PostgreSQL meanwhile). FLUSHALL and restarts
only ever hit private Redis servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import redis.asyncio as aioredis

from common.redis_values import SEQ_FIELD
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.rebuild import rebuild
from leaderboard_service.reconcile import compare
from leaderboard_service.scripts import Scripts
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    Board,
    Game,
    Seeded,
    at,
    metric,
    pg_order,
    players,
    redis_order,
    seed,
    text,
    wait_settled,
)
from tests.support.clients import Api, Viewer
from tests.support.redis_process import redis_process
from tests.support.servers import wait_for
from tests.support.stack import Stack

CONSUMER = ConsumerSettings(name="rebuild-test", block_ms=100, check_seconds=0)


class Load:
    """Players completing actions through the real write path until stopped; errors while
    Redis is wiped (a refused token check, say) are retried, PostgreSQL decides what counted."""

    def __init__(self, game: Game, users: list[str]) -> None:
        self.game = game
        self.users = users
        self.done = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _run(self, user: str) -> None:
        while not self._stop.is_set():
            try:
                await self.game.complete(user)
                self.done += 1
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(u)) for u in self.users]

    async def until(self, completions: int) -> None:
        target = self.done + completions
        await wait_for(lambda: _true(self.done >= target), timeout=60)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _true(value: bool) -> bool:
    return value


async def assert_exact(stack: Stack) -> None:
    """The Redis ranking is PostgreSQL's, member by member and in order."""
    await wait_settled(stack)
    keys = stack.keys.board("default")
    expected = await pg_order(stack.pool)
    assert expected
    assert await redis_order(stack.redis, keys) == expected
    assert (await compare(stack.pool, stack.redis, Scripts(stack.redis), keys)).mismatched == 0


async def test_flushall_under_load_then_rebuild_gives_postgresql_ranking_exactly(
    stack_factory: StackFactory,
) -> None:
    with redis_process() as own:
        async with stack_factory(redis_url=own.url, leaderboard={"consumer": CONSUMER}) as stack:
            keys = stack.keys.board("default")
            async with await Game.open(stack) as game:
                load = Load(game, await players(stack.pool, 24))
                load.start()
                try:
                    await load.until(150)
                    for _ in range(2):
                        rebuilds = metric("scoreboard_ranking_rebuilds_total")
                        await stack.redis.flushall()
                        await wait_for(
                            lambda r=rebuilds: _true(  # type: ignore[misc]
                                metric("scoreboard_ranking_rebuilds_total") > r
                            ),
                            timeout=30,
                        )
                        await load.until(150)  # the load goes on over the rebuilt ranking
                finally:
                    await load.stop()
            assert await stack.redis.exists(keys.ready)
            await assert_exact(stack)


@contextlib.asynccontextmanager
async def watching(stack: Stack) -> AsyncIterator[Viewer]:
    api = Api(stack.edge_url)
    try:
        player = await api.register()
        viewer = await Viewer.open(f"{stack.ws_url}?token={player.access_token}")
        try:
            yield viewer
        finally:
            await viewer.close()
    finally:
        await api.close()


async def test_the_sequence_keeps_growing_across_a_wipe(stack_factory: StackFactory) -> None:
    with redis_process() as own:
        async with stack_factory(redis_url=own.url, leaderboard={"consumer": CONSUMER}) as stack:
            keys = stack.keys.board("default")
            users = await players(stack.pool, 3)
            async with watching(stack) as viewer, await Game.open(stack) as game:
                for user in users:
                    await game.complete(user)
                await wait_settled(stack)
                before = int(await stack.redis.hget(keys.meta, SEQ_FIELD) or 0)
                top_before = await stack.redis.get(keys.top)
                await viewer.wait(lambda m: _update_with(m, before))

                await stack.redis.flushall()
                await wait_settled(stack)
                after_wipe = int(await stack.redis.hget(keys.meta, SEQ_FIELD) or 0)
                assert after_wipe > before
                assert await stack.redis.get(keys.top) == top_before
                await game.complete(users[2])
                await wait_settled(stack)
                latest = int(await stack.redis.hget(keys.meta, SEQ_FIELD) or 0)
                assert latest == after_wipe + 1
                await viewer.wait(lambda m: _update_with(m, latest))
            sequences = [u["sequence"] for u in viewer.updates()]
            assert sequences == sorted(set(sequences))
            assert sequences[-1] == latest


def _update_with(message: dict[str, Any], sequence: int) -> bool:
    return bool(message["type"] == "LEADERBOARD_UPDATE" and message["data"]["sequence"] == sequence)


async def test_redis_restarting_empty_is_rebuilt_and_keeps_applying(
    stack_factory: StackFactory,
) -> None:
    with redis_process() as server:
        async with stack_factory(redis_url=server.url, leaderboard={"consumer": CONSUMER}) as stack:
            users = await players(stack.pool, 4)
            async with await Game.open(stack) as game:
                for user in users:
                    await game.complete(user)
                await assert_exact(stack)
                server.stop()
                server.start()  # empty: no ranking, stream, group or scripts
                await assert_exact(stack)
                for user in users[:2]:
                    await game.complete(user)
                await assert_exact(stack)


async def test_a_wipe_in_the_middle_of_a_rebuild_starts_it_over(
    stack_factory: StackFactory,
) -> None:
    # No consumer, so nothing else notices the wipe and rebuilds first: this rebuild must.
    quiet = ConsumerSettings(enabled=False, check_seconds=0)
    with redis_process() as own:
        async with stack_factory(redis_url=own.url, leaderboard={"consumer": quiet}) as stack:
            keys = stack.keys.board("default")
            await seed(stack.pool, [Seeded(10 * (i % 7), at(i)) for i in range(300)])
            wiped = 0

            async def wipe_once() -> None:
                nonlocal wiped
                if not wiped:
                    wiped += 1
                    await stack.redis.flushall()

            ranked = await rebuild(
                stack.pool, stack.redis, Scripts(stack.redis), keys, before_swap=wipe_once
            )
            assert wiped == 1
            assert ranked == 300
            assert await stack.redis.exists(keys.ready)
            assert not await stack.redis.exists(keys.rebuild_ranking, keys.rebuild_lock)
            assert await redis_order(stack.redis, keys) == await pg_order(stack.pool)


async def test_events_during_a_rebuild_are_merged_into_it(stack_factory: StackFactory) -> None:
    async with stack_factory(leaderboard={"consumer": CONSUMER}) as stack:
        keys = stack.keys.board("default")
        users = await players(stack.pool, 5)
        async with await Game.open(stack) as game:
            for user in users:
                await game.complete(user)
            await wait_settled(stack)
            late = users[:3]

            async def during() -> None:
                # The snapshot is in the temporary keys; these commits are not in it.
                for user in late:
                    await game.complete(user)

                async def applied() -> bool:
                    states = await stack.redis.hmget(keys.users, late)
                    return all(s is not None and text(s).startswith("2|") for s in states)

                await wait_for(applied)
                touched = {text(u) for u in await stack.redis.smembers(keys.touched)}
                assert touched == set(late)
                stale = await stack.redis.hmget(keys.rebuild_users, late)
                assert all(text(s).startswith("1|") for s in stale)

            await rebuild(stack.pool, stack.redis, Scripts(stack.redis), keys, before_swap=during)
        assert not await stack.redis.exists(keys.touched)
        await assert_exact(stack)
        totals = {u: t for u, t, _ in await redis_order(stack.redis, keys)}
        assert [totals[u] for u in users] == [14, 14, 14, 7, 7]


async def test_a_new_deployment_answers_from_postgresql_until_the_ranking_is_built(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(leaderboard={"consumer": CONSUMER}) as stack:
        keys = stack.keys.board("default")
        rows = [Seeded(100 - 10 * (i // 3), at(50 - i)) for i in range(40)]
        await seed(stack.pool, rows)
        await stack.stop_service("leaderboard")
        await stack.redis.delete(keys.ranking, keys.users, keys.ready, keys.top, keys.meta)
        # Another replica is (slowly) rebuilding: this one must wait, and answer from PostgreSQL.
        await stack.redis.set(keys.rebuild_lock, "someone-else", px=60_000)
        await stack.start_service("leaderboard")
        async with await Board.as_game(stack) as board:
            during = await board.entries(page_size=100)
            assert during.from_fallback
            assert [e.user_id for e in during.entries] == [
                u for u, _, _ in await pg_order(stack.pool)
            ]
            assert during.total_users == 40
            assert not await stack.redis.exists(keys.ready)

            await stack.redis.delete(keys.rebuild_lock)
            await wait_for(lambda: _ready(stack.redis, keys.ready))
            after = await board.entries(page_size=100)
            assert not after.from_fallback
            assert list(after.entries) == list(during.entries)
            assert after.total_users == 40
        await assert_exact(stack)


async def _ready(redis: aioredis.Redis, key: str) -> bool:
    return int(await redis.exists(key)) == 1
