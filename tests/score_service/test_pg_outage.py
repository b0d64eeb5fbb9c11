"""PostgreSQL down or flapping (issue 16, item 3; DESIGN decision 13), through the real path.

Unreachable: a completion is answered UNAVAILABLE with a retry_after within its deadline, with no
stack trace per request; a completion still queued when its caller's deadline passed is never
written, even once PostgreSQL is back; the queue is bounded. Flapping (its backends terminated
every 200 ms under concurrent completions): every request is answered, and every acknowledged
completion is in the ledger exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from common.errors import ServiceError
from score_service.config import GroupCommitSettings
from scoreboard.score.v1 import score_service_pb2 as pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.score_service.helpers import (
    ScoreClient,
    assert_counters_match_ledger,
    assert_ledger_invariants,
    call,
    create_action,
    insert_users,
    ledger_rows,
)
from tests.support.pg_proxy import PgProxy, pg_proxy, score_service_on
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import game_token

POOL_NAME = "test-score-outage"


@contextlib.asynccontextmanager
async def _client(stack: Stack, url: str, **overrides: object) -> AsyncIterator[ScoreClient]:
    async with score_service_on(stack, url, pool_name=POOL_NAME, **overrides) as port:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            stub = score_service_pb2_grpc.ScoreServiceStub(channel)
            yield ScoreClient(stub, await game_token(stack))
        finally:
            await channel.close()


async def _complete(
    client: ScoreClient, action_id: str, user_id: str, *, timeout: float, key: str = ""
) -> pb.CompleteActionResponse:
    request = pb.CompleteActionRequest(action_id=action_id, user_id=user_id, idempotency_key=key)
    return await call(client.stub.CompleteAction(request, metadata=client.md(), timeout=timeout))


def _dropped() -> float:
    sample = "scoreboard_score_group_commit_refused_total"
    return REGISTRY.get_sample_value(sample, {"reason": "deadline"}) or 0.0


@pytest.fixture
async def proxy(score_stack: Stack) -> AsyncIterator[PgProxy]:
    async with pg_proxy(score_stack.config.database_url) as running:
        yield running


async def test_unreachable_postgresql_answers_unavailable_within_the_deadline_quietly(
    score_stack: Stack, proxy: PgProxy, caplog: pytest.LogCaptureFixture
) -> None:
    action = await create_action(score_stack, daily_limit=1000)
    users = await insert_users(score_stack.pool, 5)
    async with _client(score_stack, proxy.url) as client:
        await _complete(client, action.action_id, users[0], timeout=10)  # connected
        proxy.down()
        caplog.clear()
        for user in users:
            started = time.monotonic()
            with pytest.raises(ServiceError) as refused:
                await _complete(client, action.action_id, user, timeout=2)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE, refused.value
            assert refused.value.metadata.get("retry_after"), refused.value.metadata
            assert time.monotonic() - started < 2.0
        proxy.up()
    traces = [r for r in caplog.records if r.exc_info is not None]
    assert not traces, [r.getMessage() for r in traces]
    ours = [
        r
        for r in caplog.records
        if r.name.startswith("scoreboard") and r.levelno >= logging.WARNING
    ]
    assert len(ours) <= 2, [r.getMessage() for r in ours]  # not one per request
    assert len(await ledger_rows(score_stack.pool, users[0])) == 1
    for user in users[1:]:
        assert await ledger_rows(score_stack.pool, user) == []


async def test_a_queued_completion_past_its_deadline_is_never_written(
    score_stack: Stack, proxy: PgProxy
) -> None:
    action = await create_action(score_stack, daily_limit=1000)
    first, *late = await insert_users(score_stack.pool, 3)
    dropped = _dropped()
    async with _client(
        score_stack, proxy.url, group_commit=GroupCommitSettings(concurrency=1)
    ) as client:
        proxy.down()
        # The first completion holds the one transaction slot, waiting for a connection ...
        holder = asyncio.create_task(_complete(client, action.action_id, first, timeout=20))
        await asyncio.sleep(0.2)
        # ... while these queue behind it until their callers give up.
        for user in late:
            with pytest.raises(ServiceError) as gave_up:
                await _complete(client, action.action_id, user, timeout=0.5)
            assert gave_up.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        proxy.up()
        reply = await asyncio.wait_for(holder, 25)  # PostgreSQL is back: the holder is written
        assert reply.new_score == action.base_points

        async def all_dropped() -> bool:
            return _dropped() - dropped >= len(late)

        await wait_for(all_dropped, timeout=5)
        await asyncio.sleep(0.3)
    for user in late:
        assert await ledger_rows(score_stack.pool, user) == [], "written after its deadline"
    assert len(await ledger_rows(score_stack.pool, first)) == 1


async def test_the_queue_is_bounded(score_stack: Stack, proxy: PgProxy) -> None:
    action = await create_action(score_stack, daily_limit=1000)
    users = await insert_users(score_stack.pool, 4)
    settings = GroupCommitSettings(concurrency=1, queue_max=2)
    async with _client(score_stack, proxy.url, group_commit=settings) as client:
        proxy.down()
        waiting = [
            asyncio.create_task(_complete(client, action.action_id, user, timeout=3))
            for user in users[:3]  # one in the slot, two queued
        ]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(ServiceError) as full:
            await _complete(client, action.action_id, users[3], timeout=3)
        assert full.value.code == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 1.0  # refused at once, not after waiting
        await asyncio.gather(*waiting, return_exceptions=True)
        proxy.up()


async def _terminate_backends(stack: Stack, stop: asyncio.Event) -> int:
    killed = 0
    while not stop.is_set():
        async with stack.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                (POOL_NAME,),
            )
            row = await cur.fetchone()
            killed += int(row[0]) if row else 0  # type: ignore[call-overload]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return killed


@pytest.mark.slow
async def test_terminated_backends_never_lose_or_double_an_acknowledged_completion(
    score_stack: Stack,
) -> None:
    action = await create_action(score_stack, base_points=1, daily_limit=100_000)
    users = await insert_users(score_stack.pool, 12)
    workers, per_worker = 16, 25
    acked: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    refusals: Counter[str] = Counter()

    async def worker(n: int, client: ScoreClient) -> None:
        for i in range(per_worker):
            user = users[(n + i) % len(users)]
            key = f"k-{uuid.uuid4()}" if i % 3 == 0 else ""
            try:
                await _complete(client, action.action_id, user, timeout=10, key=key)
            except ServiceError as error:
                refusals[error.code.name] += 1
                if "counted at most once" in error.message:
                    unknown[user] += 1
                continue
            acked[user] += 1

    async with _client(score_stack, score_stack.config.database_url) as client:
        stop = asyncio.Event()
        killer = asyncio.create_task(_terminate_backends(score_stack, stop))
        try:
            await asyncio.wait_for(
                asyncio.gather(*(worker(n, client) for n in range(workers))), 120
            )
        finally:
            stop.set()
            killed = await killer

    assert killed > 0
    assert sum(acked.values()) + sum(refusals.values()) == workers * per_worker  # all answered
    assert set(refusals) <= {"UNAVAILABLE", "ABORTED"}, refusals
    assert sum(acked.values()) > workers * per_worker // 2, (acked, refusals)
    for user in users:
        rows = len(await ledger_rows(score_stack.pool, user))
        # Exactly the acknowledged ones; a completion whose outcome could not be learned
        # (UNAVAILABLE, "counted at most once") may or may not be there, once at most.
        assert acked[user] <= rows <= acked[user] + unknown[user], (user, rows, acked[user])
    await assert_ledger_invariants(score_stack.pool)
    await assert_counters_match_ledger(score_stack.pool)


async def test_reads_and_tickets_answer_unavailable_while_postgresql_is_unreachable(
    score_stack: Stack, proxy: PgProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Not only the score transaction: every RPC whose PostgreSQL cannot be reached answers
    UNAVAILABLE with a retry_after (the edge's 503 + Retry-After), quietly, instead of INTERNAL."""
    action = await create_action(score_stack, daily_limit=1000)
    [user] = await insert_users(score_stack.pool, 1)
    async with _client(score_stack, proxy.url) as client:
        listed = await call(
            client.stub.ListActions(
                pb.ListActionsRequest(user_id=user), metadata=client.md(), timeout=10
            )
        )
        assert action.action_id in {a.action_id for a in listed.actions}
        proxy.down()
        caplog.clear()
        for _ in range(2):
            with pytest.raises(ServiceError) as listing:
                await call(
                    client.stub.ListActions(
                        pb.ListActionsRequest(user_id=user), metadata=client.md(), timeout=3
                    )
                )
            with pytest.raises(ServiceError) as starting:
                await call(
                    client.stub.StartAction(
                        pb.StartActionRequest(action_id=action.action_id, user_id=user),
                        metadata=client.md(),
                        timeout=3,
                    )
                )
            for refused in (listing.value, starting.value):
                assert refused.code == grpc.StatusCode.UNAVAILABLE, refused
                assert refused.metadata.get("retry_after"), refused.metadata
        proxy.up()
    traces = [r for r in caplog.records if r.exc_info is not None]
    assert not traces, [r.getMessage() for r in traces]
