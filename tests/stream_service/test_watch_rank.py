"""StreamService.WatchRank over real gRPC streams, fed by the real write path (score_service ->
outbox -> stream -> apply script -> rank channel): the rank at once, SELF for the user's own
score, OVERTAKEN naming the passer, THRESHOLD entering the top 10, the ticker's moves that no
event announced, and who may watch whom (DESIGN decisions 7 and 12)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import grpc
import pytest

from common.redis_values import parse_user_state
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings
from tests.conftest import StackFactory
from tests.score_service.helpers import create_action, score_client
from tests.stream_service.rank_watcher import RankWatcher
from tests.support.ranks import place_players
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import game_token, register, service_account

# Fast ticker, no throttle, no percentile bands (few players): each test sees every change.
RANKS = RankSettings(tick_seconds=0.3, min_interval_seconds=0.0, percentile_min_players=10**9)


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(with_edge=False, stream={"rank": RANKS}) as stack:
        yield stack


async def _player(stack: Stack, prefix: str) -> tuple[str, str, str]:
    name = f"{prefix}{secrets.token_hex(3)}"
    user_id, token = await register(stack, name)
    return user_id, token, name


async def _complete(stack: Stack, token: str, action_id: str, times: int = 1) -> None:
    async with score_client(stack, token) as client:
        for _ in range(times):
            await client.complete(action_id)


async def _wait_ranked(stack: Stack, user_id: str, *, version: int) -> None:
    users = stack.keys.board("default").users

    async def applied() -> bool:
        raw = await stack.redis.hget(users, user_id)
        return raw is not None and parse_user_state(raw).version >= version

    await wait_for(applied)


async def test_self_then_overtaken_naming_the_passer_then_self(stack: Stack) -> None:
    action = await create_action(stack, base_points=7, daily_limit=1000)
    a_id, a_token, _ = await _player(stack, "alice")
    b_id, b_token, b_name = await _player(stack, "bob")
    await _complete(stack, a_token, action.action_id, 3)  # A: 21
    # The watch must open on A's 21 already ranked, or its first message would be A's own move.
    await _wait_ranked(stack, a_id, version=3)
    watcher = RankWatcher(stack.address("stream"), a_token)
    try:
        first = await watcher.wait(lambda u: u.score == 21)
        assert first.reason == pb.RANK_REASON_INITIAL
        assert (first.board_id, first.period, first.user_id) == ("default", 1, a_id)
        assert not first.HasField("percentile") and not first.HasField("tier")
        start_rank = first.rank

        await _complete(stack, b_token, action.action_id, 4)  # B: 28, passes A
        passed = await watcher.wait(lambda u: u.reason == pb.RANK_REASON_OVERTAKEN)
        assert passed.overtaken_by.user_id == b_id
        assert passed.overtaken_by.username == b_name
        assert passed.rank == start_rank + 1
        assert passed.distance_to_next == 7  # B's 28 - A's 21
        assert passed.change_time.seconds > 0

        await _complete(stack, a_token, action.action_id, 2)  # A: 35, back above B
        own = await watcher.wait(lambda u: u.reason == pb.RANK_REASON_SELF and u.score == 35)
        assert own.rank == start_rank
        assert own.total_players == passed.total_players
    finally:
        await watcher.close()


async def test_entering_the_top_10_is_a_threshold(stack: Stack) -> None:
    await place_players(stack.redis, stack.keys.board("default"), [5000 + i for i in range(12)])
    jump = await create_action(stack, base_points=5005, daily_limit=10)
    small = await create_action(stack, base_points=1, daily_limit=10)
    _, token, _ = await _player(stack, "carol")
    await _complete(stack, token, small.action_id)
    watcher = RankWatcher(stack.address("stream"), token)
    try:
        first = await watcher.wait(lambda u: u.score == 1)
        assert first.rank > 10
        await _complete(stack, token, jump.action_id)  # 5006: above 5000..5005
        crossed = await watcher.wait(lambda u: u.score == 5006)
        assert crossed.reason == pb.RANK_REASON_THRESHOLD
        assert "top10" in crossed.crossed
        assert crossed.rank <= 10
    finally:
        await watcher.close()


async def test_the_ticker_pushes_a_big_move_no_event_announced(stack: Stack) -> None:
    board = stack.keys.board("default")
    await place_players(stack.redis, board, [100_000 + i for i in range(150)])
    action = await create_action(stack, base_points=3, daily_limit=10)
    _, token, _ = await _player(stack, "dave")
    await _complete(stack, token, action.action_id)
    watcher = RankWatcher(stack.address("stream"), token)
    try:
        first = await watcher.wait(lambda u: u.score == 3)
        assert first.rank > 150
        # Twenty players appear above, written as a repair writes (no rank move published).
        await place_players(stack.redis, board, [200_000 + i for i in range(20)])
        moved = await watcher.wait(lambda u: u.rank == first.rank + 20)
        assert moved.reason == pb.RANK_REASON_MOVED
        assert not moved.HasField("change_time")
        assert moved.total_players == first.total_players + 20
        # One player more is below 1 % of the rank: the ticker pushes nothing for it.
        await place_players(stack.redis, board, [300_000])
        hub = stack.services["stream"].running.parts["rank_hubs"]["default"]
        ticks = hub.ticks

        async def three_more_ticks() -> bool:
            return bool(hub.ticks >= ticks + 3)

        await wait_for(three_more_ticks)
        assert watcher.updates[-1] == moved
    finally:
        await watcher.close()


async def test_a_user_watches_only_itself_a_service_names_anyone(stack: Stack) -> None:
    a_id, _, _ = await _player(stack, "erin")
    _, b_token, _ = await _player(stack, "fred")
    refused = RankWatcher(stack.address("stream"), b_token, user_id=a_id)
    assert await refused.refused() == grpc.StatusCode.PERMISSION_DENIED
    await refused.close()

    allowed = RankWatcher(stack.address("stream"), await game_token(stack), user_id=a_id)
    try:
        first = await allowed.wait(lambda u: u.reason == pb.RANK_REASON_INITIAL)
        assert first.user_id == a_id and first.rank == 0  # not ranked yet
    finally:
        await allowed.close()

    nobody = RankWatcher(stack.address("stream"), await game_token(stack))
    assert await nobody.refused() == grpc.StatusCode.INVALID_ARGUMENT
    await nobody.close()

    no_scope = await service_account(stack, "rank-reader", ("leaderboard:read",))
    scopeless = RankWatcher(stack.address("stream"), no_scope, user_id=a_id)
    assert await scopeless.refused() == grpc.StatusCode.PERMISSION_DENIED
    await scopeless.close()
