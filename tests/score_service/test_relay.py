"""The outbox relay against real PostgreSQL and Redis: killed between commit and publish and
between publish and delete, two relays at once, lost notifications, Redis down. Afterwards every
committed change is in the stream at least once and the ranking equals the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio.client import Pipeline

from common.config import DatabaseSettings, VerifierSettings
from common.db import Pool, open_pool
from common.redis_values import SEQ_FIELD
from score_service import relay as relay_module
from score_service.config import RelaySettings
from score_service.relay import FaultHook, OutboxRelay
from tests.conftest import StackFactory
from tests.score_service.helpers import (
    assert_ledger_invariants,
    assert_stream_covers_ledger,
    competition_rank,
    create_action,
    insert_users,
    score_client,
    stream_events,
    wait_ranking_caught_up,
)
from tests.support.ledger import outbox_count
from tests.support.redis_process import redis_process
from tests.support.servers import wait_for
from tests.support.stack import KeyFiles, Stack
from tests.support.tokens import game_token

NO_RELAY = {"relay": RelaySettings(enabled=False)}
BOUND = 30.0  # seconds; only a bound so a broken relay fails instead of hanging


@asynccontextmanager
async def relay_pool(stack: Stack, name: str) -> AsyncIterator[Pool]:
    pool = await open_pool(
        DatabaseSettings(stack.config.database_url, min_connections=1, max_connections=2),
        name=name,
    )
    try:
        yield pool
    finally:
        await pool.close()


def new_relay(
    stack: Stack, pool: Pool, fault: FaultHook | None = None, **settings: Any
) -> OutboxRelay:
    return OutboxRelay(
        pool,
        stack.redis,
        stack.keys,
        dataclasses.replace(RelaySettings(sweep_seconds=0.2), **settings),
        database_url=stack.config.database_url,
        fault=fault,
    )


async def kill_sessions(stack: Stack, application_name: str) -> int:
    """What PostgreSQL sees when a relay process dies: its sessions end, its transaction is
    rolled back by the server."""
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (application_name,),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


async def commit_completions(stack: Stack, users: int, per_user: int) -> None:
    action = await create_action(stack, base_points=10, daily_limit=1000)
    ids = await insert_users(stack.pool, users)
    async with score_client(stack, await game_token(stack)) as game:
        for _ in range(per_user):
            for user in ids:
                await game.complete(action.action_id, user_id=user)


@asynccontextmanager
async def _running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    """The relay's loop in a task, cancelled on the way out."""
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def kill_relay_at(stack: Stack, stage: str) -> None:
    """Run one relay pass that dies at `stage` with its rows claimed."""
    reached = asyncio.Event()

    async def fault(at: str) -> None:
        if at == stage:
            reached.set()
            await asyncio.Event().wait()  # the process is frozen here until it is killed

    async with relay_pool(stack, "relay-victim") as pool:
        task = asyncio.create_task(new_relay(stack, pool, fault).drain_once())
        await asyncio.wait_for(reached.wait(), BOUND)
        assert await kill_sessions(stack, "relay-victim") >= 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def consumer_idle(stack: Stack) -> bool:
    """The leaderboard's consumer group has read and acknowledged the whole stream."""
    stream = stack.keys.board("default").events
    info = await stack.redis.xinfo_stream(stream)
    groups = await stack.redis.xinfo_groups(stream)
    last = info["last-generated-id"]
    return bool(groups) and all(
        g["last-delivered-id"] == last and g["pending"] == 0 for g in groups
    )


async def test_relay_killed_between_commit_and_publish_loses_nothing(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(score=NO_RELAY) as stack:
        await commit_completions(stack, users=3, per_user=2)
        assert await outbox_count(stack.pool) == 6

        await kill_relay_at(stack, "claimed")

        assert await outbox_count(stack.pool) == 6
        assert await stream_events(stack.redis, stack.keys) == []
        async with relay_pool(stack, "relay-restarted") as pool:
            assert await new_relay(stack, pool).drain_once() == 6
        events = await stream_events(stack.redis, stack.keys)
        assert len(events) == 6 and len({e.ledger_entry_id for e in events}) == 6
        await assert_stream_covers_ledger(stack.pool, events)
        await wait_ranking_caught_up(stack)
        await assert_ledger_invariants(stack.pool)


async def test_relay_killed_between_publish_and_delete_duplicates_harmlessly(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(score=NO_RELAY) as stack:
        await commit_completions(stack, users=3, per_user=2)

        await kill_relay_at(stack, "published")

        # Published but not deleted: the rows are still there, the events too.
        assert await outbox_count(stack.pool) == 6
        assert len(await stream_events(stack.redis, stack.keys)) == 6
        await wait_for(lambda: consumer_idle(stack), timeout=BOUND)
        meta = stack.keys.board("default").meta
        sequence = await stack.redis.hget(meta, SEQ_FIELD)
        totals = await stack.redis.zrange(
            stack.keys.board("default").ranking, 0, -1, withscores=True
        )

        async with relay_pool(stack, "relay-restarted") as pool:
            assert await new_relay(stack, pool).drain_once() == 6

        events = await stream_events(stack.redis, stack.keys)
        assert len(events) == 12
        ids = [e.ledger_entry_id for e in events]
        assert all(ids.count(i) == 2 for i in ids)
        await assert_stream_covers_ledger(stack.pool, events)
        await wait_for(lambda: consumer_idle(stack), timeout=BOUND)
        # Applied again, the duplicates changed nothing: same ranking, no new top-10 message.
        await wait_ranking_caught_up(stack)
        assert await stack.redis.hget(meta, SEQ_FIELD) == sequence
        ranking = stack.keys.board("default").ranking
        assert await stack.redis.zrange(ranking, 0, -1, withscores=True) == totals
        assert await outbox_count(stack.pool) == 0
        await assert_ledger_invariants(stack.pool)


async def test_two_relays_share_the_outbox_without_waiting_or_duplicating(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(score=NO_RELAY) as stack:
        await commit_completions(stack, users=4, per_user=5)
        assert await outbox_count(stack.pool) == 20
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold(stage: str) -> None:
            if stage == "published":
                holding.set()
                await release.wait()

        async with relay_pool(stack, "relay-a") as pool_a, relay_pool(stack, "relay-b") as pool_b:
            first = new_relay(stack, pool_a, hold, batch_size=5)
            second = new_relay(stack, pool_b, batch_size=5)
            held = asyncio.create_task(first.drain_once())
            await asyncio.wait_for(holding.wait(), BOUND)
            # While the first relay holds its 5 rows, the second skips them and moves the rest.
            moved = 0
            while (batch := await asyncio.wait_for(second.drain_once(), BOUND)) > 0:
                moved += batch
            assert moved == 15
            release.set()
            assert await asyncio.wait_for(held, BOUND) == 5

        events = await stream_events(stack.redis, stack.keys)
        assert len(events) == 20 and len({e.ledger_entry_id for e in events}) == 20
        await assert_stream_covers_ledger(stack.pool, events)
        assert await outbox_count(stack.pool) == 0


async def test_two_running_relays_deliver_a_burst_exactly_once(
    stack_factory: StackFactory,
) -> None:
    """The service's own relay and a second one run side by side while actions commit."""
    async with stack_factory() as stack, relay_pool(stack, "relay-second") as pool:
        second = asyncio.create_task(new_relay(stack, pool, batch_size=3).run())
        try:
            action = await create_action(stack, base_points=1, daily_limit=1000)
            users = await insert_users(stack.pool, 10)
            async with score_client(stack, await game_token(stack)) as game:

                async def player(user: str) -> None:
                    for _ in range(10):
                        await game.complete(action.action_id, user_id=user)

                await asyncio.gather(*(player(u) for u in users))
            await wait_for(lambda: _outbox_empty(stack), timeout=BOUND)
        finally:
            second.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await second
        events = await stream_events(stack.redis, stack.keys)
        assert len(events) == 100 and len({e.ledger_entry_id for e in events}) == 100
        await assert_stream_covers_ledger(stack.pool, events)
        await wait_ranking_caught_up(stack)
        await assert_ledger_invariants(stack.pool)


async def _outbox_empty(stack: Stack) -> bool:
    return await outbox_count(stack.pool) == 0


async def test_without_notifications_the_sweep_delivers(stack_factory: StackFactory) -> None:
    """A relay that cannot LISTEN (every notification lost) still moves everything."""
    async with stack_factory(score=NO_RELAY) as stack, relay_pool(stack, "relay-deaf") as pool:
        relay = new_relay(stack, pool, listen=False, sweep_seconds=0.3)
        async with _running(relay):
            await commit_completions(stack, users=2, per_user=3)
            await wait_for(lambda: _outbox_empty(stack), timeout=BOUND)
            assert not relay.listening.is_set()
        await assert_stream_covers_ledger(stack.pool, await stream_events(stack.redis, stack.keys))


async def test_a_lost_notification_only_delays(stack_factory: StackFactory) -> None:
    """A row committed without its NOTIFY, while the relay listens: the sweep moves it."""
    async with stack_factory(score=NO_RELAY) as stack, relay_pool(stack, "relay-l") as pool:
        await commit_completions(stack, users=1, per_user=1)
        async with stack.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM outbox RETURNING board_id, payload")
            [(board, payload)] = await cur.fetchall()
        relay = new_relay(stack, pool, sweep_seconds=0.3)
        async with _running(relay):
            await asyncio.wait_for(relay.listening.wait(), BOUND)
            async with stack.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO outbox (board_id, payload) VALUES (%s, %s)", (board, payload)
                )
            await wait_for(lambda: _outbox_empty(stack), timeout=BOUND)
        await assert_stream_covers_ledger(stack.pool, await stream_events(stack.redis, stack.keys))


async def test_notifications_wake_the_relay(stack_factory: StackFactory) -> None:
    """With an hour between sweeps, only NOTIFY can deliver within the test."""
    async with stack_factory(score=NO_RELAY) as stack, relay_pool(stack, "relay-n") as pool:
        relay = new_relay(stack, pool, sweep_seconds=3600)
        async with _running(relay):
            await asyncio.wait_for(relay.listening.wait(), BOUND)
            await commit_completions(stack, users=2, per_user=2)
            await wait_for(lambda: _outbox_empty(stack), timeout=BOUND)
        await assert_stream_covers_ledger(stack.pool, await stream_events(stack.redis, stack.keys))


async def test_actions_commit_while_redis_is_down_and_flow_when_it_is_back(
    stack_factory: StackFactory, key_files: KeyFiles
) -> None:
    # Revocation checks need Redis and fail closed; this score_service runs without them (as
    # with an external issuer), so that only the relay and the rank depend on Redis here.
    verifier = VerifierSettings(
        issuer="scoreboard",
        audience="scoreboard",
        jwks_file=key_files.jwks,
        jwks_refresh_seconds=1.0,
        denylist=False,
    )
    with redis_process(persistent=True) as redis_server:
        async with stack_factory(
            redis_url=redis_server.url, with_edge=False, score={"verifier": verifier}
        ) as stack:
            action = await create_action(stack, base_points=10, daily_limit=100)
            users = await insert_users(stack.pool, 3)
            async with score_client(stack, await game_token(stack)) as game:
                await game.complete(action.action_id, user_id=users[0])
                await wait_ranking_caught_up(stack)

                redis_server.stop()
                for _ in range(3):
                    for user in users:
                        reply = await game.complete(action.action_id, user_id=user)
                        # Redis cannot answer: the rank is counted in PostgreSQL, still exact.
                        assert reply.rank == await competition_rank(stack.pool, reply.new_score)
                assert await outbox_count(stack.pool) == 9

                redis_server.start()
                # The test's own client drops its connections to the stopped server.
                await stack.redis.connection_pool.disconnect()
                await wait_for(lambda: _outbox_empty(stack), timeout=BOUND)
                # And the path works as before.
                await game.complete(action.action_id, user_id=users[1])
                await wait_for(lambda: _outbox_empty(stack), timeout=BOUND)
            events = await stream_events(stack.redis, stack.keys)
            await assert_stream_covers_ledger(stack.pool, events)
            await wait_ranking_caught_up(stack)
            await assert_ledger_invariants(stack.pool)


async def test_the_stream_length_is_asked_once_a_second_far_below_the_cap(
    stack_factory: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XLEN is a round trip per pass; far below the cap the relay trusts what it read and added
    for a second, and still stops exactly at the cap (tests/leaderboard_service/test_trim.py)."""
    # However slow this machine, the passes below fall within one freshness window.
    monkeypatch.setattr(relay_module, "_LENGTH_FRESH_SECONDS", 3600.0)
    asked: list[str] = []
    xlen = Pipeline.xlen

    def counting(self: Pipeline, name: str) -> Any:
        asked.append(name)
        return xlen(self, name)

    monkeypatch.setattr(Pipeline, "xlen", counting)
    async with stack_factory(score=NO_RELAY) as stack:
        await commit_completions(stack, users=2, per_user=4)
        async with relay_pool(stack, "relay-counted") as pool:
            relay = new_relay(stack, pool, batch_size=1)
            moved = 0
            while (batch := await asyncio.wait_for(relay.drain_once(), BOUND)) > 0:
                moved += batch
        assert moved == 8
        assert await stack.redis.xlen(stack.keys.board("default").events) == 8
        # Eight passes: the first asked, the rest trusted it.
        assert asked == [stack.keys.board("default").events]
