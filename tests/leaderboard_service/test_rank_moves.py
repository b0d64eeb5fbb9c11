"""apply.lua's rank moves (DESIGN decision 12): with the rank channel as its ninth key, each
applied event publishes its user's old and new competition rank, score, nearest better score and
the few users it passed (bounded), decoded by common/redis_values.py."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from common.redis_keys import BoardKeys, Keys
from common.redis_values import Move, Moves, decode_moves, encode_moves
from leaderboard_service.events import script_args
from leaderboard_service.scripts import Scripts
from scoreboard.events.v1 import events_pb2

T0 = 1_767_225_000_000_000


def _user(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _args(n: int, total: int, version: int, *, excluded: bool = False) -> list[str]:
    def stamp(us: int) -> Timestamp:
        value = Timestamp()
        value.FromMicroseconds(us)
        return value

    return script_args(
        events_pb2.ScoreUpdated(
            board_id="default",
            user_id=_user(n),
            display_name=f"player {n}",
            total=total,
            version=version,
            reached_time=stamp(T0 + version * 1000 + n),
            commit_time=stamp(T0 + version * 1000 + n),
            excluded=excluded,
        )
    )


@pytest.fixture
async def board(redis_url: str, run_prefix: str) -> AsyncIterator[tuple[aioredis.Redis, BoardKeys]]:
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(f"{run_prefix}moves-{secrets.token_hex(3)}:").board("default")
    await redis.set(keys.ready, "1")
    try:
        yield redis, keys
    finally:
        await redis.aclose()


async def _apply(
    redis: aioredis.Redis, keys: BoardKeys, events: list[list[str]], *, max_passed: int = 5
) -> Moves | None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.rank_channel)
    try:
        await Scripts(redis, max_passed=max_passed).apply_events(keys, events, now_us=T0, group="g")
        async with asyncio.timeout(2):
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None:
                    return decode_moves(message["data"])
    except TimeoutError:
        return None
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_mover_names_its_ranks_and_the_nearest_users_it_passed(
    board: tuple[aioredis.Redis, BoardKeys],
) -> None:
    redis, keys = board
    # Ten players: player i has 100 * i points (player 10 first).
    first = await _apply(redis, keys, [_args(i, 100 * i, 1) for i in range(1, 11)])
    assert first is not None and first.ranked == 10
    # Player 1 (last, rank 10) jumps to 550: passes players 5..1 -> ranks 6 -> and names the 5
    # right below its new place (5, 4, 3, 2), never more than max_passed.
    moves = await _apply(redis, keys, [_args(1, 550, 2)], max_passed=3)
    assert moves is not None
    (move,) = moves.moves
    assert move == Move(
        _user(1), "player 1", 10, 6, 550, 600, T0 + 2 * 1000 + 1, (_user(5), _user(4), _user(3))
    )
    assert moves.ranked == 10


async def test_a_tie_shares_the_rank_and_passes_nobody(
    board: tuple[aioredis.Redis, BoardKeys],
) -> None:
    redis, keys = board
    await _apply(redis, keys, [_args(1, 100, 1), _args(2, 200, 1)])
    moves = await _apply(redis, keys, [_args(1, 200, 2)])
    assert moves is not None
    (move,) = moves.moves
    assert (move.old_rank, move.new_rank, move.passed, move.next_score) == (2, 1, (), None)


async def test_a_new_user_and_an_excluded_user(board: tuple[aioredis.Redis, BoardKeys]) -> None:
    redis, keys = board
    await _apply(redis, keys, [_args(1, 100, 1)])
    moves = await _apply(redis, keys, [_args(2, 300, 1)])
    assert moves is not None
    assert moves.moves[0].old_rank == 0 and moves.moves[0].new_rank == 1
    assert moves.moves[0].passed == (_user(1),)
    moves = await _apply(redis, keys, [_args(2, 300, 2, excluded=True)])
    assert moves is not None
    assert (moves.moves[0].old_rank, moves.moves[0].new_rank) == (1, 0)


async def test_without_the_rank_channel_or_before_ready_nothing_is_published(
    board: tuple[aioredis.Redis, BoardKeys],
) -> None:
    redis, keys = board
    await redis.delete(keys.ready)
    assert await _apply(redis, keys, [_args(1, 100, 1)]) is None


def test_the_moves_encoding_round_trips() -> None:
    moves = Moves(3, [Move(_user(1), "a/b", 4, 2, 10, 12, T0, (_user(2),))])
    assert decode_moves(encode_moves(moves)) == moves
