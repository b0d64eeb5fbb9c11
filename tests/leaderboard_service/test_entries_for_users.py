"""ListEntriesForUsers (a friends list, a group) and GetUserRank's percentile, over gRPC on a real
stack: global ranks and ranks within the list with shared ties, the caller added, users without
a score listed unranked, the limits, and the PostgreSQL fallback answering exactly like Redis.
Plus unit tests of the pure list ranking and percentile."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import grpc
import pytest

from common.redis_values import Entry
from common.tiers import percentile
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.ranking import listed
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    Board,
    Seeded,
    at,
    competition_ranks,
    micros,
    refused,
    seed,
)
from tests.support.clients import metadata
from tests.support.stack import Stack
from tests.support.tokens import game_token, issuer, register

USERS = 30
SMALL = 9  # ranked users of the second board: below MIN_PLAYERS
MIN_PLAYERS = 10
NOBODY = str(uuid.UUID(int=18))  # not a user


@dataclass(frozen=True)
class Ranked:
    row: Seeded
    rank: int


@dataclass
class Dataset:
    stack: Stack
    ranked: list[Ranked]
    banned: Seeded
    small: list[Seeded]
    scoreless: tuple[str, str]  # a registered user without a score: (user id, token)

    def by_id(self, user_id: str) -> Ranked | None:
        return next((r for r in self.ranked if r.row.user_id == user_id), None)


def _rows() -> list[Seeded]:
    rng = random.Random(18)
    rows = [
        Seeded(rng.choice([90, 70, 70, 50, 50, 50, 20]), at(rng.random() * 1e5))
        for _ in range(USERS - 2)
    ]
    # Same total and same instant: the user id decides the order, the rank is shared.
    return [*rows, Seeded(50, at(777)), Seeded(50, at(777))]


@pytest.fixture(scope="module")
async def data(stack_factory: StackFactory) -> AsyncIterator[Dataset]:
    consumer = ConsumerSettings(name="for-users", block_ms=100, check_seconds=0)
    async with stack_factory(
        leaderboard={
            "consumer": consumer,
            "boards": ("default", "small"),
            "percentile_min_players": MIN_PLAYERS,
        },
        with_edge=False,
    ) as stack:
        async with stack.pool.connection() as conn:
            await conn.execute("INSERT INTO boards (id, name) VALUES ('small', 'Small')")
            await conn.commit()
        rows = _rows()
        banned = Seeded(10_000, at(1), banned=True)
        small = [Seeded(5 * i, at(i)) for i in range(1, SMALL + 1)]
        await seed(stack.pool, [*rows, banned])
        await seed(stack.pool, small, board="small")
        async with await Board.as_admin(stack) as admin:
            assert (await admin.rebuild()).users == USERS
            assert (await admin.rebuild("small")).users == SMALL
        order = sorted(rows, key=lambda r: (-r.total, micros(r.reached), r.user_id))
        ranks = competition_ranks([r.total for r in order])
        ranked = [Ranked(r, ranks[i]) for i, r in enumerate(order)]
        yield Dataset(stack, ranked, banned, small, await register(stack))


def _channel(stack: Stack) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(stack.address("leaderboard"))


def user_token(stack: Stack, user_id: str) -> str:
    """An ordinary user's token, as auth_service would issue it."""
    return issuer(stack).access_token(subject=user_id, role="user", scopes=(), lifetime=600).token


async def for_users(board: Board, user_ids: Sequence[str], board_id: str = "") -> Any:
    return await board.stub.ListEntriesForUsers(
        pb.ListEntriesForUsersRequest(board_id=board_id, user_ids=list(user_ids)),
        metadata=metadata(board.token),
        timeout=30,
    )


@pytest.fixture
async def game(data: Dataset) -> AsyncIterator[Board]:
    """A game server: a service caller, so nobody is added to its lists."""
    async with Board(_channel(data.stack), await game_token(data.stack)) as client:
        yield client


Row = tuple[str, bool, int, int, str, int, int]


def row(entry: Any) -> Row:
    return (
        entry.user_id,
        entry.ranked,
        entry.rank,
        entry.list_rank,
        entry.username,
        entry.score,
        entry.reached_time.ToMicroseconds(),
    )


def expected(data: Dataset, user_ids: Sequence[str]) -> list[Row]:
    """The answer worked out from the dataset: ranked users in the board's order, each with
    1 + listed users with a higher total as list rank; then the others in the order asked."""
    distinct = list(dict.fromkeys(user_ids))
    ranked = [r for r in data.ranked if r.row.user_id in distinct]  # already in board order
    rows: list[Row] = [
        (
            r.row.user_id,
            True,
            r.rank,
            1 + sum(o.row.total > r.row.total for o in ranked),
            r.row.display_name,
            r.row.total,
            micros(r.row.reached),
        )
        for r in ranked
    ]
    listed_ids = {r.row.user_id for r in ranked}
    rows += [(u, False, 0, 0, "", 0, 0) for u in distinct if u not in listed_ids]
    return rows


def _chosen(data: Dataset) -> list[str]:
    """Some of every total (the tied pair of the same instant included), in a shuffled order."""
    fifties = [r.row.user_id for r in data.ranked if r.row.total == 50]
    others = [r.row.user_id for r in data.ranked if r.row.total != 50][::3]
    chosen = [*fifties[:2], *fifties[-2:], *others]
    random.Random(1).shuffle(chosen)
    return chosen


async def test_global_and_list_ranks_with_shared_ties(data: Dataset, game: Board) -> None:
    chosen = _chosen(data)
    reply = await for_users(game, chosen)
    assert [row(e) for e in reply.entries] == expected(data, chosen)
    assert reply.total_users == USERS and not reply.from_fallback
    ranks = [e.rank for e in reply.entries]
    list_ranks = [e.list_rank for e in reply.entries]
    # Ties share both ranks, and the list rank skips after a tie (1, 2, 2, 4).
    assert len(set(ranks)) < len(ranks) and len(set(list_ranks)) < len(list_ranks)
    assert list_ranks[0] == 1
    assert list_ranks == competition_ranks([e.score for e in reply.entries])


async def test_users_without_a_score_are_listed_unranked_in_the_order_asked(
    data: Dataset, game: Board
) -> None:
    unknown = [str(uuid.uuid4()), str(uuid.uuid4())]
    scoreless, _ = data.scoreless
    best, worst = data.ranked[0].row.user_id, data.ranked[-1].row.user_id
    asked = [unknown[0], worst, data.banned.user_id, scoreless, best, unknown[1]]
    reply = await for_users(game, asked)
    assert [row(e) for e in reply.entries] == expected(data, asked)
    assert [e.user_id for e in reply.entries] == [
        best,
        worst,
        unknown[0],
        data.banned.user_id,
        scoreless,
        unknown[1],
    ]
    for entry in reply.entries[2:]:
        assert not entry.ranked and not entry.HasField("reached_time")
    assert list((await for_users(game, [])).entries) == []


async def test_the_caller_is_added(data: Dataset) -> None:
    me = data.ranked[5]
    friends = [data.ranked[0].row.user_id, data.ranked[20].row.user_id]
    async with Board(_channel(data.stack), user_token(data.stack, me.row.user_id)) as mine:
        reply = await for_users(mine, friends)
        assert [row(e) for e in reply.entries] == expected(data, [*friends, me.row.user_id])
        # Asking for oneself too changes nothing.
        again = await for_users(mine, [me.row.user_id, *friends])
        assert again.entries == reply.entries
        # Exactly 100 ids plus the caller.
        hundred = [str(uuid.uuid4()) for _ in range(98)] + friends
        full = await for_users(mine, hundred)
        assert len(full.entries) == 101
        assert {e.user_id for e in full.entries} == {*hundred, me.row.user_id}

    scoreless, token = data.scoreless
    async with Board(_channel(data.stack), token) as newcomer:
        alone = await for_users(newcomer, [])
        assert [row(e) for e in alone.entries] == [(scoreless, False, 0, 0, "", 0, 0)]


async def test_limits_duplicates_and_malformed_ids(data: Dataset, game: Board) -> None:
    a, b = data.ranked[3].row.user_id, data.ranked[9].row.user_id
    reply = await for_users(game, [a, b, a, a.upper(), "{" + b + "}"])
    assert [row(e) for e in reply.entries] == expected(data, [a, b])

    error = await refused(for_users(game, [str(uuid.uuid4()) for _ in range(101)]))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert error.message == "user_ids holds 101 ids; at most 100 are allowed"
    # Duplicates still count against the limit: it bounds the request, not the answer.
    error = await refused(for_users(game, [a] * 101))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT

    error = await refused(for_users(game, [a, "not-a-uuid"]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "user_ids[1] is not a user id (UUID): 'not-a-uuid'"

    error = await refused(for_users(game, [a], board_id="no-such-board"))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


async def test_who_may_ask(data: Dataset) -> None:
    async with Board(_channel(data.stack), "") as anonymous:
        error = await refused(
            anonymous.stub.ListEntriesForUsers(pb.ListEntriesForUsersRequest(), timeout=10)
        )
        assert error.code == grpc.StatusCode.UNAUTHENTICATED


def expected_percentile(rank: int, total: int) -> float:
    return math.ceil(Fraction(1000 * rank, total)) / 10


async def test_percentile_is_exact_above_the_minimum_and_hidden_below(
    data: Dataset, game: Board
) -> None:
    for item in data.ranked:
        reply = await game.rank(item.row.user_id)
        assert reply.HasField("percentile")
        assert reply.percentile == expected_percentile(item.rank, USERS)
    best = await game.rank(data.ranked[0].row.user_id)
    assert best.percentile == 3.4  # 1 of 30 is the top 3.33 %, rounded up
    # Tied users share a percentile.
    tied = [r for r in data.ranked if r.row.total == 50]
    assert len({(await game.rank(r.row.user_id)).percentile for r in tied}) == 1

    # The second board has fewer ranked users than the minimum.
    small = await game.rank(data.small[0].user_id, board="small")
    assert small.entry.rank == SMALL and small.total_users == SMALL
    assert not small.HasField("percentile")


async def _answers(data: Dataset, game: Board) -> list[Any]:
    """Every answer of the new queries, with the fields that may differ cleared."""
    result: list[Any] = []
    asked = [
        _chosen(data),
        [r.row.user_id for r in data.ranked],
        [NOBODY, data.banned.user_id, data.ranked[-1].row.user_id],
        [data.ranked[0].row.user_id, data.ranked[0].row.user_id.upper()],
    ]
    asked_on = [("", user_ids) for user_ids in asked]
    asked_on.append(("small", [s.user_id for s in data.small]))
    for board_id, user_ids in asked_on:
        reply = await for_users(game, user_ids, board_id)
        reply.ClearField("from_fallback")
        result.append(reply)
    for item in data.ranked:
        result.append(await game.rank(item.row.user_id))
    result.append(await game.rank(data.small[3].user_id, board="small"))
    return result


async def test_the_postgresql_fallback_answers_exactly_like_redis(
    data: Dataset, game: Board
) -> None:
    stack, keys = data.stack, data.stack.keys.board("default")
    small = data.stack.keys.board("small")
    from_redis = await _answers(data, game)
    for board_keys in (keys, small):
        await stack.redis.delete(board_keys.ready)
        await stack.redis.set(board_keys.rebuild_lock, "held-by-the-test", px=120_000)
    try:
        assert (await for_users(game, _chosen(data))).from_fallback
        from_postgresql = await _answers(data, game)
    finally:
        async with await Board.as_admin(stack) as admin:
            for board_id, board_keys in (("default", keys), ("small", small)):
                await stack.redis.delete(board_keys.rebuild_lock)
                await admin.rebuild(board_id)
    assert not (await for_users(game, _chosen(data))).from_fallback
    assert from_postgresql == from_redis


# Pure logic


def _entry(user: str, score: int, reached: int, rank: int = 0) -> Entry:
    return Entry(rank, user, user.upper(), score, reached)


def test_listed_orders_like_the_board_and_ranks_within_the_list() -> None:
    found = [
        _entry("d", 5, 1, rank=9),
        _entry("b", 10, 2, rank=3),
        _entry("c", 10, 2, rank=3),
        _entry("a", 20, 9, rank=1),
        _entry("e", 10, 1, rank=3),
    ]
    result = listed(["x", "d", "b", "y", "c", "a", "e", "x"], found)
    assert [(i.user_id, i.list_rank, i.entry is not None) for i in result] == [
        ("a", 1, True),
        ("e", 2, True),  # earlier at the same score
        ("b", 2, True),  # same instant: the user id decides
        ("c", 2, True),
        ("d", 5, True),
        ("x", 0, False),
        ("y", 0, False),
    ]
    assert listed([], []) == []


@pytest.mark.parametrize(
    ("rank", "total", "minimum", "expected"),
    [
        (1, 1_000_000, 100, 0.1),
        (1000, 1_000_000, 100, 0.1),
        (1001, 1_000_000, 100, 0.2),
        (1, 100, 100, 1.0),
        (1, 99, 100, None),
        (1, 3, 0, 33.4),
        (2, 3, 0, 66.7),
        (3, 3, 0, 100.0),
        (50, 200, 100, 25.0),
        (0, 200, 0, None),
        (201, 200, 0, None),
        (1, 0, 0, None),
    ],
)
def test_percentile(rank: int, total: int, minimum: int, expected: float | None) -> None:
    assert percentile(rank, total, minimum) == expected
