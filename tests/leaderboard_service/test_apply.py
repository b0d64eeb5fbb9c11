"""Applying score events: versioned (duplicates and reordering change nothing), one atomic script
per batch, and a top-10 snapshot published exactly when the top 10 changed."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.redis_values import (
    SEQ_FIELD,
    Top10,
    UserState,
    decode_top10,
    encode_entries,
    parse_user_state,
)
from leaderboard_service.config import ConsumerSettings
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    Seeded,
    at,
    event,
    micros,
    publish,
    redis_order,
    snapshot,
    text,
    wait_drained,
)
from tests.support.servers import wait_for


def history(users: int, changes: int, seed: int) -> list[Seeded]:
    """Score changes of `users` users in commit order: versions 1, 2, ... per user, totals on a
    coarse grid (many ties), sometimes banned and unbanned."""
    rng = random.Random(seed)
    ids = [Seeded(0, at(0)).user_id for _ in range(users)]
    current: dict[str, Seeded] = {}
    changes_list: list[Seeded] = []
    for step in range(1, changes + 1):
        user = rng.choice(ids)
        before = current.get(user)
        total = (before.total if before else 0) + rng.choice([0, 5, 10, 10, 20, -5])
        banned = (before.banned if before else False) ^ (rng.random() < 0.05)
        state = Seeded(
            total=total,
            reached=at(step + rng.random()),
            version=(before.version if before else 0) + 1,
            name=f"Player {user[:4]}",
            banned=banned,
            user_id=user,
        )
        current[user] = state
        changes_list.append(state)
    return changes_list


def expected_order(changes: list[Seeded]) -> list[tuple[str, int, int]]:
    final: dict[str, Seeded] = {}
    for change in changes:
        if change.user_id not in final or change.version > final[change.user_id].version:
            final[change.user_id] = change
    ranked = [s for s in final.values() if not s.banned]
    ranked.sort(key=lambda s: (-s.total, micros(s.reached), s.user_id))
    return [(s.user_id, s.total, micros(s.reached)) for s in ranked]


async def deliver(redis: aioredis.Redis, keys: Any, changes: list[Seeded], chunk: int) -> None:
    for start in range(0, len(changes), chunk):
        await publish(redis, keys, [event(c) for c in changes[start : start + chunk]])
    await wait_drained(redis, keys)


async def test_duplicated_and_shuffled_events_give_the_in_order_ranking(
    stack_factory: StackFactory,
) -> None:
    consumer = ConsumerSettings(name="apply-test", batch_size=7, block_ms=100, check_seconds=0)
    async with stack_factory(leaderboard={"consumer": consumer}) as stack:
        keys = stack.keys.board("default")
        changes = history(users=40, changes=300, seed=11)

        await deliver(stack.redis, keys, changes, chunk=25)
        in_order = await snapshot(stack.redis, keys)
        assert await redis_order(stack.redis, keys) == expected_order(changes)

        await stack.redis.delete(keys.ranking, keys.users, keys.top)
        rng = random.Random(5)
        messy = [c for c in changes for _ in range(rng.randint(1, 3))]
        rng.shuffle(messy)
        await deliver(stack.redis, keys, messy, chunk=31)
        assert await snapshot(stack.redis, keys) == in_order

        # The stored states are the newest versions, in the documented layout.
        final = {c.user_id: c for c in changes}
        users: Any = await stack.redis.hgetall(keys.users)
        assert {text(k): text(v) for k, v in users.items()} == {
            u: UserState(s.version, micros(s.reached), s.banned, s.display_name).encode()
            for u, s in final.items()
        }


@contextlib.asynccontextmanager
async def subscribed(redis_url: str, channel: str) -> AsyncIterator[asyncio.Queue[Top10]]:
    """Every snapshot published on the channel, in order."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    queue: asyncio.Queue[Top10] = asyncio.Queue()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                queue.put_nowait(decode_top10(message["data"]))

    task = asyncio.create_task(listen())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def next_snapshot(queue: asyncio.Queue[Top10]) -> Top10:
    return await asyncio.wait_for(queue.get(), 10)


def leaders(snapshot_: Top10) -> list[tuple[str, int]]:
    return [(e.user_id, e.score) for e in snapshot_.entries]


async def test_a_top10_change_publishes_exactly_once_and_others_nothing(
    stack_factory: StackFactory, redis_url: str
) -> None:
    consumer = ConsumerSettings(name="publish-test", block_ms=100, check_seconds=0)
    async with stack_factory(leaderboard={"consumer": consumer}) as stack:
        keys = stack.keys.board("default")
        players = [Seeded(1000 - 10 * i, at(i)) for i in range(15)]
        async with subscribed(redis_url, keys.channel) as snapshots:
            await publish(stack.redis, keys, [event(p) for p in players])
            first = await next_snapshot(snapshots)
            assert leaders(first) == [(p.user_id, p.total) for p in players[:10]]
            assert [e.rank for e in first.entries] == list(range(1, 11))
            assert await stack.redis.get(keys.top) == encode_entries(first.entries)

            async def applied(row: Seeded) -> bool:
                state = await stack.redis.hget(keys.users, row.user_id)
                return state is not None and parse_user_state(state).version == row.version

            # Outside the top 10: the 14th gains points but stays 11th at best.
            outside = Seeded(905, at(100), 2, user_id=players[13].user_id)
            await publish(stack.redis, keys, [event(outside)])
            await wait_for(lambda: applied(outside))
            # A change in the top 10 right after it: the next snapshot is this one, so the
            # change outside published nothing.
            leader = Seeded(2000, at(101), 2, user_id=players[12].user_id)
            await publish(stack.redis, keys, [event(leader)])
            second = await next_snapshot(snapshots)
            assert second.seq == first.seq + 1
            assert leaders(second)[0] == (leader.user_id, 2000)
            assert leaders(second)[1:] == leaders(first)[:9]

            # The same event again (a relay retry) changes nothing and publishes nothing; one
            # batch with three top-10 changes publishes once.
            await publish(stack.redis, keys, [event(leader)])
            await wait_drained(stack.redis, keys)
            batch = [
                Seeded(3000, at(102), 2, user_id=players[14].user_id),
                Seeded(2500, at(103), 2, user_id=players[11].user_id),
                Seeded(1, at(104), 2, user_id=players[0].user_id),
            ]
            await publish(stack.redis, keys, [event(b) for b in batch])
            third = await next_snapshot(snapshots)
            assert third.seq == second.seq + 1
            assert leaders(third)[:3] == [
                (players[14].user_id, 3000),
                (players[11].user_id, 2500),
                (leader.user_id, 2000),
            ]
            assert players[0].user_id not in dict(leaders(third))
            await wait_drained(stack.redis, keys)
            assert snapshots.empty()
            assert await stack.redis.hget(keys.meta, SEQ_FIELD) == str(third.seq).encode()


@pytest.mark.parametrize("batch_size", [1, 500])
async def test_ties_share_a_rank_and_the_earlier_achiever_comes_first(
    stack_factory: StackFactory, redis_url: str, batch_size: int
) -> None:
    consumer = ConsumerSettings(
        name=f"ties-{batch_size}", batch_size=batch_size, block_ms=100, check_seconds=0
    )
    async with stack_factory(leaderboard={"consumer": consumer}) as stack:
        keys = stack.keys.board("default")
        late = Seeded(50, at(30))
        early = Seeded(50, at(10))
        top = Seeded(70, at(20))
        last = Seeded(40, at(5))
        async with subscribed(redis_url, keys.channel) as snapshots:
            await publish(stack.redis, keys, [event(r) for r in (late, early, top, last)])
            latest = await next_snapshot(snapshots)
            while len(latest.entries) < 4:
                latest = await next_snapshot(snapshots)
        assert [(e.rank, e.user_id, e.score) for e in latest.entries] == [
            (1, top.user_id, 70),
            (2, early.user_id, 50),
            (2, late.user_id, 50),
            (4, last.user_id, 40),
        ]
