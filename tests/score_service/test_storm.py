"""A storm of 2,000 random completions over 200 users from 32 concurrent clients (each with its
own connection), with retries of the same idempotency key mixed in. Afterwards the ledger, the
totals, the stream and the ranking all agree."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import cast

import grpc
import pytest
from prometheus_client import REGISTRY

from common.errors import Reason, ServiceError
from common.redis_values import parse_member, total_of
from scoreboard.score.v1 import score_service_pb2 as pb
from tests.conftest import StackFactory
from tests.score_service.helpers import (
    assert_counters_match_ledger,
    assert_ledger_invariants,
    assert_stream_covers_ledger,
    create_action,
    database_versions,
    insert_users,
    score_client,
    stream_events,
    wait_ranking_caught_up,
)
from tests.support.ledger import outbox_count
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import game_token

USERS = 200
COMPLETIONS = 2_000
CLIENTS = 32
EXPECTED_REFUSALS = {
    Reason.DAILY_LIMIT_REACHED,
    Reason.COOLDOWN_ACTIVE,
}


async def _ranking_totals(stack: Stack) -> dict[str, int]:
    raw = cast(
        "list[tuple[bytes, float]]",
        await stack.redis.zrange(stack.keys.board("default").ranking, 0, -1, withscores=True),
    )
    return {parse_member(member).user_id: total_of(score) for member, score in raw}


async def _database_totals(stack: Stack) -> dict[str, int]:
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT user_id::text, total FROM user_scores WHERE board_id = 'default'"
            " AND version > 0"
        )
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}  # type: ignore[call-overload]


@pytest.mark.slow
async def test_storm_of_random_completions_keeps_every_invariant(
    stack_factory: StackFactory,
) -> None:
    rng = random.Random(20261127)
    async with stack_factory() as stack:
        many = await create_action(stack, base_points=3, daily_limit=100_000)
        weighted = await create_action(stack, base_points=7, multiplier=1.5, daily_limit=100_000)
        # The seeded catalog adds limited actions: daily-login (once), complete-quest (3 a day,
        # 60 s cooldown), win-match (20 a day, 10 s cooldown).
        catalog = [many.action_id, weighted.action_id, "daily-login", "complete-quest", "win-match"]
        users = await insert_users(stack.pool, USERS)
        token = await game_token(stack)
        work: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        for n in range(COMPLETIONS):
            key = f"storm-{n}" if rng.random() < 0.5 else ""
            work.put_nowait((rng.choice(users), rng.choice(catalog), key))
        accepted: dict[int, pb.CompleteActionResponse] = {}
        scorers: set[str] = set()
        replays: list[pb.CompleteActionResponse] = []
        refusals: Counter[tuple[str, grpc.StatusCode]] = Counter()

        async def client(seed: int) -> None:
            local = random.Random(seed)
            async with score_client(stack, token) as game:
                while not work.empty():
                    user, action_id, key = work.get_nowait()
                    # Some requests are sent twice with their key, as a client that lost the
                    # first response would.
                    attempts = 2 if key and local.random() < 0.2 else 1
                    for _ in range(attempts):
                        try:
                            reply = await game.complete(action_id, user_id=user, key=key)
                        except ServiceError as error:
                            refusals[(error.reason, error.code)] += 1
                            continue
                        if reply.replayed:
                            replays.append(reply)
                        else:
                            assert reply.ledger_entry_id not in accepted
                            accepted[reply.ledger_entry_id] = reply
                            scorers.add(user)

        grouped_before = _grouped()
        await asyncio.gather(*(client(seed) for seed in range(CLIENTS)))

        assert {reason for reason, _ in refusals} <= EXPECTED_REFUSALS, refusals
        assert {code for _, code in refusals} == {grpc.StatusCode.FAILED_PRECONDITION}
        assert len(accepted) > COMPLETIONS // 2
        assert replays, "some retries should have been replayed"
        for replay in replays:
            original = accepted[replay.ledger_entry_id]
            replay.replayed = False
            assert replay == original
        # PostgreSQL: one ledger row per accepted completion, totals and versions exact.
        async with stack.pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM user_actions")
            assert {int(r[0]) for r in await cur.fetchall()} == set(accepted)  # type: ignore[call-overload]
        checked = await assert_ledger_invariants(stack.pool)
        await assert_counters_match_ledger(stack.pool)
        # 32 clients against 4 transaction slots: completions shared transactions.
        assert _grouped() > grouped_before
        assert checked == len(await database_versions(stack.pool)) == len(scorers)
        # The stream: every committed change reached it (at least once), with its state.
        await wait_for(lambda: _outbox_empty(stack), timeout=60)
        events = await stream_events(stack.redis, stack.keys)
        await assert_stream_covers_ledger(stack.pool, events)
        # The ranking ends equal to PostgreSQL.
        await wait_ranking_caught_up(stack, timeout=60)
        assert await _ranking_totals(stack) == await _database_totals(stack)


def _grouped() -> float:
    """Completions written in a transaction with others so far (this process's registry)."""
    count = REGISTRY.get_sample_value("scoreboard_score_group_size_count") or 0.0
    total = REGISTRY.get_sample_value("scoreboard_score_group_size_sum") or 0.0
    return total - count


async def _outbox_empty(stack: Stack) -> bool:
    return await outbox_count(stack.pool) == 0
