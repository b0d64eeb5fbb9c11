"""The rank in a CompleteAction response is the standard competition rank right after the
update (equal totals share a rank: 1, 2, 2, 4), from Redis or, when Redis cannot answer, from
PostgreSQL; and it agrees with the leaderboard service."""

from __future__ import annotations

import grpc

from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from tests.conftest import StackFactory
from tests.score_service.helpers import (
    ScoreClient,
    call,
    competition_rank,
    create_action,
    insert_users,
    score_client,
    wait_ranking_caught_up,
)
from tests.support.clients import metadata
from tests.support.stack import Stack
from tests.support.tokens import game_token


async def _leaderboard_rank(stack: Stack, token: str, user_id: str) -> int:
    channel = grpc.aio.insecure_channel(stack.address("leaderboard"))
    try:
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        reply = await call(
            stub.GetUserRank(
                lb.GetUserRankRequest(board_id="default", user_id=user_id),
                metadata=metadata(token),
                timeout=30,
            )
        )
    finally:
        await channel.close()
    return int(reply.entry.rank)


async def _complete(stack: Stack, game: ScoreClient, action_id: str, user: str) -> int:
    """Complete once (everyone else's changes are in the ranking); check the rank; return it."""
    reply = await game.complete(action_id, user_id=user)
    expected = await competition_rank(stack.pool, reply.new_score)
    assert reply.rank == expected, (reply, expected)
    return int(reply.rank)


async def test_rank_is_the_competition_rank_right_after_the_update(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory() as stack:
        action = await create_action(stack, base_points=10, daily_limit=100)
        a, b, c, d, e, f = await insert_users(stack.pool, 6)
        token = await game_token(stack)
        async with score_client(stack, token) as game:
            # a 30, b 20, c 20, d 10
            for user, times in ((a, 3), (b, 2), (c, 2), (d, 1)):
                for _ in range(times):
                    await game.complete(action.action_id, user_id=user)
            await wait_ranking_caught_up(stack)

            # e 10: ties with d below a, b, c -> 4 (1, 2, 2, 4, 4)
            assert await _complete(stack, game, action.action_id, e) == 4
            await wait_ranking_caught_up(stack)
            assert await _leaderboard_rank(stack, token, e) == 4
            # e 20: ties with b and c -> 2
            assert await _complete(stack, game, action.action_id, e) == 2
            await wait_ranking_caught_up(stack)
            assert await _leaderboard_rank(stack, token, e) == 2
            assert await _leaderboard_rank(stack, token, b) == 2
            # f climbs without waiting for its own events: its older totals never count
            # against it. 10 -> 5 (a, b, c, e above), 20 -> 2, 30 -> 1 (tied with a), 40 -> 1.
            ranks = [await _complete(stack, game, action.action_id, f) for _ in range(4)]
            assert ranks == [5, 2, 1, 1]
            await wait_ranking_caught_up(stack)
            assert await _leaderboard_rank(stack, token, f) == 1
            assert await _leaderboard_rank(stack, token, a) == 2


async def test_rank_comes_from_postgresql_while_the_ranking_is_not_ready(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory() as stack:
        action = await create_action(stack, base_points=10, daily_limit=100)
        first, second = await insert_users(stack.pool, 2)
        async with score_client(stack, await game_token(stack)) as game:
            await game.complete(action.action_id, user_id=first)
            await game.complete(action.action_id, user_id=first)
            await wait_ranking_caught_up(stack)
            # Stop the leaderboard (nothing rebuilds) and mark the ranking not ready, as during
            # a rebuild: the Redis count would now be wrong, PostgreSQL must answer.
            await stack.stop_service("leaderboard")
            ready = stack.keys.board("default").ready
            ranking = stack.keys.board("default").ranking
            await stack.redis.delete(ready, ranking)
            assert (await game.complete(action.action_id, user_id=second)).rank == 2
            assert (await game.complete(action.action_id, user_id=second)).rank == 1
            await stack.start_service("leaderboard")
            await wait_ranking_caught_up(stack)
