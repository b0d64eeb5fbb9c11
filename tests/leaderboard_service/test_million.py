"""Rank queries against a 1,000,000-user board answer exactly what an independent computation
says. Users are seeded with COPY; the ranking is built by RebuildRanking (the rebuild's
pipeline), on a private Redis so the memory never lands on a shared server."""

from __future__ import annotations

import random
from typing import Any

import grpc
import pytest

from bench.seeding import BoardSpec, seed_postgres
from common.redis_values import parse_member, total_of
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.servicer import encode_page_token
from tests.conftest import StackFactory
from tests.leaderboard_service.support import Board, competition_ranks, refused
from tests.support.redis_process import redis_process

USERS = 1_000_000


@pytest.mark.slow
async def test_rank_queries_at_a_million_users(stack_factory: StackFactory) -> None:
    spec = BoardSpec(USERS)
    consumer = ConsumerSettings(name="million", block_ms=100, check_seconds=0)
    with redis_process() as own:
        async with stack_factory(
            redis_url=own.url, leaderboard={"consumer": consumer}, with_edge=False
        ) as stack:
            keys = stack.keys.board("default")
            async with stack.pool.connection() as conn:
                await seed_postgres(conn, spec)
            async with await Board.as_admin(stack) as admin:
                rebuilt = await admin.rebuild()
            expected = spec.ranked_order()  # (index, user id, total, reached µs)
            assert rebuilt.users == len(expected) == USERS - 10
            ranks = competition_ranks([row[2] for row in expected])

            # The whole sorted set, member by member, in order.
            for start in range(0, len(expected), 100_000):
                members: Any = await stack.redis.zrange(
                    keys.ranking, start, start + 99_999, withscores=True
                )
                decoded = [(parse_member(m), total_of(s)) for m, s in members]
                assert [(m.user_id, t, m.reached_us) for m, t in decoded] == [
                    (u, t, r) for _, u, t, r in expected[start : start + 100_000]
                ]

            # Memory per user (sorted set plus user states), from Redis itself.
            per_user = 0
            for key in (keys.ranking, keys.users):
                per_user += int(
                    await stack.redis.execute_command(  # type: ignore[no-untyped-call]
                        "MEMORY", "USAGE", key, "SAMPLES", "0"
                    )
                )
            assert per_user / USERS < 400

            async with await Board.as_game(stack) as board:
                await check_queries(board, spec, expected, ranks)
                await check_fallback(stack, board, expected)


def entry(item: Any) -> tuple[int, str, int, int]:
    return (item.rank, item.user_id, item.score, item.reached_time.ToMicroseconds())


def want(expected: list[tuple[int, str, int, int]], ranks: list[int], a: int, b: int) -> Any:
    return [(ranks[p], expected[p][1], expected[p][2], expected[p][3]) for p in range(a, b)]


async def check_queries(
    board: Board, spec: BoardSpec, expected: list[tuple[int, str, int, int]], ranks: list[int]
) -> None:
    last = len(expected) - 1
    tenth = expected[9][2]
    rng = random.Random(17)
    positions = [0, 1, 9, 10, 11, 12_345, 500_000, last - 1, last]
    positions += rng.sample(range(len(expected)), 150)
    # Exact ties (same total and instant): the user id decides.
    positions += [p for p in range(1, 3000) if expected[p - 1][2:] == expected[p][2:]][:5]
    for position in positions:
        _, user_id, total, _ = expected[position]
        reply = await board.rank(user_id)
        assert entry(reply.entry)[:3] == (ranks[position], user_id, total), position
        assert reply.in_top10 is (position < 10)
        assert reply.distance_from_top10 == (0 if position < 10 else tenth - total + 1)
        assert reply.total_users == len(expected)

    first = await board.entries()
    assert [entry(e) for e in first.entries] == want(expected, ranks, 0, 10)
    assert first.total_users == len(expected)
    deep = await board.entries(page_size=10, page_token=encode_page_token("default", 99_990))
    assert [entry(e) for e in deep.entries] == want(expected, ranks, 99_990, 100_000)
    assert deep.next_page_token == ""  # pages end at offset 100,000

    around_last = await board.around(expected[last][1], 5)
    assert [entry(e) for e in around_last.entries] == want(expected, ranks, last - 5, last + 1)
    around_first = await board.around(expected[0][1], 5)
    assert [entry(e) for e in around_first.entries] == want(expected, ranks, 0, 6)
    middle = 654_321
    around = await board.around(expected[middle][1], 3)
    assert [entry(e) for e in around.entries] == want(expected, ranks, middle - 3, middle + 4)

    banned = spec.user(99_999)
    assert banned.banned
    error = await refused(board.rank(banned.user_id))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def check_fallback(
    stack: Any, board: Board, expected: list[tuple[int, str, int, int]]
) -> None:
    """A few answers from PostgreSQL at this size equal Redis's."""
    keys = stack.keys.board("default")
    users = [expected[p][1] for p in (0, 10, 333_333, len(expected) - 1)]
    from_redis = [await board.entries()] + [await board.rank(u) for u in users]
    from_redis += [await board.around(users[2], 2)]
    await stack.redis.delete(keys.ready)
    await stack.redis.set(keys.rebuild_lock, "held-by-the-test", px=300_000)
    try:
        from_pg = [await board.entries()] + [await board.rank(u) for u in users]
        from_pg += [await board.around(users[2], 2)]
    finally:
        await stack.redis.set(keys.ready, "1")  # the ranking itself was never touched
        await stack.redis.delete(keys.rebuild_lock)
    assert from_pg[0].from_fallback and not from_redis[0].from_fallback
    for page in (from_pg[0], from_redis[0]):
        page.ClearField("from_fallback")
        page.ClearField("update_time")
    assert from_pg == from_redis
