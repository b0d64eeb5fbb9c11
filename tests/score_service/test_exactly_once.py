"""Exactly once across a lost COMMIT (issue 16, DESIGN decision 13), through the real path: a
score_service whose PostgreSQL connections go through a proxy that cuts the link right around the
COMMIT of a score transaction.

Cut after the COMMIT reached the server, the change is durable but the service sees a lost
connection: it must find the completion in the ledger by its identity and answer it, never write
it again (a repeatable action would be counted twice, a once-a-day action refused as "limit
reached"). Cut before, nothing was written: the completion is written again, once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from common.db import Pool
from score_service.config import GroupCommitSettings
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.score_service.helpers import (
    ScoreClient,
    assert_counters_match_ledger,
    assert_ledger_invariants,
    create_action,
    insert_users,
    ledger_rows,
    score_of,
)
from tests.support.pg_proxy import Mode, PgProxy, pg_proxy, score_service_on
from tests.support.stack import Stack
from tests.support.tokens import game_token

# Sent by every score transaction that checks a completion (its lock of the users' rows).
MARKER = b"FOR UPDATE OF s"
POOL_NAME = "test-score-proxied"


@pytest.fixture(scope="module")
async def proxy(score_stack: Stack) -> AsyncIterator[PgProxy]:
    async with pg_proxy(score_stack.config.database_url) as running:
        yield running


@pytest.fixture(scope="module")
async def client(score_stack: Stack, proxy: PgProxy) -> AsyncIterator[ScoreClient]:
    """A game server's client of a score_service behind the proxy, one transaction at a time
    (so a test can tell which transaction holds which completions)."""
    async with score_service_on(
        score_stack,
        proxy.url,
        pool_name=POOL_NAME,
        group_commit=GroupCommitSettings(concurrency=1),
    ) as port:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            stub = score_service_pb2_grpc.ScoreServiceStub(channel)
            yield ScoreClient(stub, await game_token(score_stack))
        finally:
            await channel.close()


@pytest.fixture(autouse=True)
def _fresh_cuts(proxy: PgProxy) -> None:
    proxy.cuts.clear()


async def _completion_ids(pool: Pool, user_id: str) -> list[str | None]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT completion_id::text FROM user_actions WHERE user_id = %s ORDER BY id",
            (user_id,),
        )
        return [row[0] for row in await cur.fetchall()]  # type: ignore[misc]


def _unknown_commits(outcome: str) -> float:
    sample = "scoreboard_score_commit_unknown_total"
    return REGISTRY.get_sample_value(sample, {"outcome": outcome}) or 0.0


async def _check_ledger(stack: Stack) -> None:
    await assert_ledger_invariants(stack.pool)
    await assert_counters_match_ledger(stack.pool)


@pytest.mark.parametrize("mode", ["after", "before"])
@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "key"])
async def test_a_cut_commit_counts_a_completion_exactly_once(
    score_stack: Stack, proxy: PgProxy, client: ScoreClient, mode: Mode, keyed: bool
) -> None:
    action = await create_action(score_stack, base_points=7, daily_limit=1000)
    [user] = await insert_users(score_stack.pool, 1)
    key = f"k-{uuid.uuid4()}" if keyed else ""
    landed, not_landed = _unknown_commits("landed"), _unknown_commits("not_landed")
    proxy.arm(mode, marker=MARKER)

    reply = await client.complete(action.action_id, user_id=user, key=key)

    assert proxy.cuts == [mode]  # the link was really cut around that COMMIT
    # The service did not know the outcome, and the ledger told it.
    assert (_unknown_commits("landed") - landed, _unknown_commits("not_landed") - not_landed) == (
        (1.0, 0.0) if mode == "after" else (0.0, 1.0)
    )
    rows = await ledger_rows(score_stack.pool, user)
    assert len(rows) == 1, f"the completion was counted {len(rows)} times"
    assert (reply.ledger_entry_id, reply.new_score, reply.increment, reply.version) == (
        rows[0][0],
        7,
        7,
        1,
    )
    assert not reply.replayed
    assert await score_of(score_stack.pool, user) == (7, 1)
    [completion_id] = await _completion_ids(score_stack.pool, user)
    assert completion_id is not None
    if keyed:
        again = await client.complete(action.action_id, user_id=user, key=key)
        assert again.replayed and again.ledger_entry_id == reply.ledger_entry_id
        assert len(await ledger_rows(score_stack.pool, user)) == 1
    await _check_ledger(score_stack)


@pytest.mark.parametrize("mode", ["after", "before"])
async def test_a_once_a_day_action_is_not_refused_after_a_cut_commit(
    score_stack: Stack, proxy: PgProxy, client: ScoreClient, mode: Mode
) -> None:
    action = await create_action(score_stack, base_points=50, daily_limit=1)
    [user] = await insert_users(score_stack.pool, 1)
    proxy.arm(mode, marker=MARKER)

    reply = await client.complete(action.action_id, user_id=user)  # not DAILY_LIMIT_REACHED

    assert proxy.cuts == [mode]
    assert reply.new_score == 50
    assert [row[0] for row in await ledger_rows(score_stack.pool, user)] == [reply.ledger_entry_id]
    await _check_ledger(score_stack)


@pytest.mark.parametrize("mode", ["after", "before"])
async def test_every_completion_of_a_cut_group_is_counted_exactly_once(
    score_stack: Stack, proxy: PgProxy, client: ScoreClient, mode: Mode
) -> None:
    action = await create_action(score_stack, base_points=3, daily_limit=1000)
    blocker, *users = await insert_users(score_stack.pool, 5)
    await client.complete(action.action_id, user_id=blocker)  # its score row exists now
    # Hold the blocker's row: its next completion waits in its transaction while the others
    # queue behind it (one transaction at a time) and form the next group.
    async with score_stack.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM user_scores WHERE board_id = 'default' AND user_id = %s FOR UPDATE",
            (blocker,),
        )
        first = asyncio.create_task(client.complete(action.action_id, user_id=blocker))
        await asyncio.sleep(0.3)
        # Two completions of each user, one with a key, in one group.
        requests = [(user, f"k-{uuid.uuid4()}" if n % 2 else "") for user in users for n in (0, 1)]
        group = [
            asyncio.create_task(client.complete(action.action_id, user_id=user, key=key))
            for user, key in requests
        ]
        await asyncio.sleep(0.3)
        proxy.arm(mode, marker=MARKER, skip=1)  # the blocker's COMMIT passes, the group's not
    await first
    replies = await asyncio.wait_for(asyncio.gather(*group), 30)

    assert proxy.cuts == [mode]
    for user in users:
        rows = await ledger_rows(score_stack.pool, user)
        assert len(rows) == 2, f"user {user}: 2 completions counted {len(rows)} times"
        mine = sorted(
            r.ledger_entry_id for (u, _), r in zip(requests, replies, strict=True) if u == user
        )
        assert mine == [row[0] for row in rows]
        assert await score_of(score_stack.pool, user) == (6, 2)
    assert len({r.ledger_entry_id for r in replies}) == len(requests)
    await _check_ledger(score_stack)
