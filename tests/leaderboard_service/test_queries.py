"""Rank queries over gRPC and through the edge: pages and page tokens, bounds, ties, one user's
rank, the entries around a user at the edges of the board, NOT_FOUND, authorization, and the
PostgreSQL fallback answering exactly like Redis."""

from __future__ import annotations

import base64
import math
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import grpc
import orjson
import pytest

from auth_service.config import PasswordSettings
from auth_service.passwords import Passwords
from auth_service.store import AuthStore
from common.grpc_client import call_metadata
from leaderboard_service.config import ConsumerSettings
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
from tests.support.clients import Api, Player, service_token
from tests.support.stack import Stack

USERS = 130


@dataclass
class Ranked:
    row: Seeded
    position: int
    rank: int


@dataclass
class Dataset:
    stack: Stack
    ranked: list[Ranked]
    unranked: list[Seeded]  # banned, or registered without a score
    player: Player

    def expected_rank(self, item: Ranked) -> dict[str, Any]:
        tenth = self.ranked[9].row.total
        return {
            "rank": item.rank,
            "score": item.row.total,
            "in_top10": item.position < 10,
            "distance": 0 if item.position < 10 else tenth - item.row.total + 1,
            "total": len(self.ranked),
        }


def _rows() -> tuple[list[Seeded], list[Seeded]]:
    rng = random.Random(3)
    rows = [
        Seeded(rng.choice([500, 400, 400, 300, 250, 250, 250, 100, 50, 0]), at(rng.random() * 1e6))
        for _ in range(USERS)
    ]
    # Same total and same instant: the user id decides.
    rows += [Seeded(250, at(12345)), Seeded(250, at(12345))]
    banned = [Seeded(10_000, at(1), banned=True)]
    return rows, banned


@pytest.fixture(scope="module")
async def data(stack_factory: StackFactory) -> AsyncIterator[Dataset]:
    consumer = ConsumerSettings(name="queries", block_ms=100, check_seconds=0)
    async with stack_factory(leaderboard={"consumer": consumer}) as stack:
        rows, banned = _rows()
        await seed(stack.pool, rows + banned)
        api = Api(stack.edge_url)
        try:
            player = await api.register()  # registered, no score yet
        finally:
            await api.close()
        async with await Board.as_admin(stack) as admin:
            assert (await admin.rebuild()).users == len(rows)
        order = sorted(rows, key=lambda r: (-r.total, micros(r.reached), r.user_id))
        ranks = competition_ranks([r.total for r in order])
        ranked = [Ranked(r, i, ranks[i]) for i, r in enumerate(order)]
        yield Dataset(stack, ranked, banned, player)


@pytest.fixture
async def board(data: Dataset) -> AsyncIterator[Board]:
    async with Board(grpc.aio.insecure_channel(data.stack.address("leaderboard")), "") as client:
        client.token = data.player.access_token  # an ordinary signed-in user reads the board
        yield client


def entry_tuple(entry: Any) -> tuple[int, str, int, int]:
    return (entry.rank, entry.user_id, entry.score, entry.reached_time.ToMicroseconds())


def expected_tuples(items: list[Ranked]) -> list[tuple[int, str, int, int]]:
    return [(i.rank, i.row.user_id, i.row.total, micros(i.row.reached)) for i in items]


async def test_pages_follow_the_documented_order_with_competition_ranks(
    data: Dataset, board: Board
) -> None:
    assert [e for e in await board.all_entries(page_size=7)] == await board.all_entries(100)
    entries = await board.all_entries(page_size=7)
    assert [entry_tuple(e) for e in entries] == expected_tuples(data.ranked)
    assert [e.username for e in entries] == [i.row.display_name for i in data.ranked]
    # Ties share a rank and the earlier achiever comes first.
    ranks = [e.rank for e in entries]
    assert len(set(ranks)) < len(ranks)
    first = await board.entries()
    assert len(first.entries) == 10
    assert first.total_users == len(data.ranked)
    assert not first.from_fallback


async def test_page_size_bounds_and_page_tokens(data: Dataset, board: Board) -> None:
    assert len((await board.entries(page_size=0)).entries) == 10
    assert len((await board.entries(page_size=500)).entries) == 100
    page = await board.entries(page_size=100)
    rest = await board.entries(page_size=100, page_token=page.next_page_token)
    assert len(rest.entries) == len(data.ranked) - 100
    assert rest.next_page_token == ""
    assert rest.entries[0].user_id == data.ranked[100].row.user_id

    error = await refused(board.entries(page_size=-1))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")

    def token(payload: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")

    for bad in (
        "not a token",
        token({"b": "other", "o": 10}),
        token({"b": "default", "o": -1}),
        token({"b": "default", "o": 0}),
        token({"b": "default", "o": 100_001}),
        token({"b": "default", "o": "10"}),
        token({"b": "default", "o": 1.5}),
        token([1, 2]),
        "A" * 300,
    ):
        error = await refused(board.entries(page_token=bad))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert error.message == "page_token is not valid"

    error = await refused(board.entries(board="no-such-board"))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_user_rank_answers_every_field(data: Dataset, board: Board) -> None:
    for item in data.ranked:
        reply = await board.rank(item.row.user_id)
        assert reply.entry.user_id == item.row.user_id
        assert reply.entry.username == item.row.display_name
        assert {
            "rank": reply.entry.rank,
            "score": reply.entry.score,
            "in_top10": reply.in_top10,
            "distance": reply.distance_from_top10,
            "total": reply.total_users,
        } == data.expected_rank(item)
    # A tie with the 10th that came later is not listed in the top 10, and one point more than
    # the 10th would be enough.
    outside = [i for i in data.ranked if i.position >= 10 and i.rank <= 10]
    assert outside
    reply = await board.rank(outside[0].row.user_id)
    assert not reply.in_top10 and reply.distance_from_top10 == 1


async def test_unknown_banned_and_scoreless_users_are_not_found(
    data: Dataset, board: Board
) -> None:
    for user_id in (str(uuid.uuid4()), data.unranked[0].user_id, data.player.user_id):
        error = await refused(board.rank(user_id))
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
        error = await refused(board.around(user_id))
        assert error.code == grpc.StatusCode.NOT_FOUND
    error = await refused(board.rank("not-a-uuid"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_entries_around_a_user_at_the_edges_of_the_board(data: Dataset, board: Board) -> None:
    ranked = data.ranked
    first, last, middle = ranked[0], ranked[-1], ranked[60]
    assert [entry_tuple(e) for e in (await board.around(first.row.user_id, 3)).entries] == (
        expected_tuples(ranked[:4])
    )
    assert [entry_tuple(e) for e in (await board.around(last.row.user_id, 3)).entries] == (
        expected_tuples(ranked[-4:])
    )
    assert [entry_tuple(e) for e in (await board.around(middle.row.user_id, 3)).entries] == (
        expected_tuples(ranked[57:64])
    )
    default = await board.around(middle.row.user_id)
    assert [entry_tuple(e) for e in default.entries] == expected_tuples(ranked[55:66])
    widest = await board.around(ranked[1].row.user_id, 50)
    assert [entry_tuple(e) for e in widest.entries] == expected_tuples(ranked[:52])
    for count in (-1, 51):
        error = await refused(board.around(middle.row.user_id, count))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_edge_serves_the_same_answers(data: Dataset) -> None:
    api = Api(data.stack.edge_url)
    auth = {"authorization": f"Bearer {data.player.access_token}"}
    try:
        item = data.ranked[12]
        reply = await api.http.get(f"/api/leaderboard/user/{item.row.user_id}", headers=auth)
        assert reply.status_code == 200
        expected = data.expected_rank(item)
        assert reply.json()["data"] == {
            "userId": item.row.user_id,
            "username": item.row.display_name,
            "rank": expected["rank"],
            "score": expected["score"],
            "inTop10": expected["in_top10"],
            "distanceFromTop10": expected["distance"],
            "totalUsers": expected["total"],
            # Above the default minimum population (100 ranked users): rank / total, rounded up.
            "percentile": math.ceil(Fraction(1000 * expected["rank"], expected["total"])) / 10,
            "tier": None,  # the board defines no tiers
        }
        missing = await api.http.get(f"/api/leaderboard/user/{uuid.uuid4()}", headers=auth)
        assert missing.status_code == 404
        assert missing.json() == {
            "success": False,
            "error": "this user has no score on the board",
            "code": "USER_NOT_FOUND",
        }
        bad = await api.http.get("/api/leaderboard/user/nope", headers=auth)
        assert bad.status_code == 400

        around = await api.http.get(
            f"/api/leaderboard/user/{item.row.user_id}/around?count=2", headers=auth
        )
        assert around.status_code == 200
        assert [e["userId"] for e in around.json()["data"]["entries"]] == [
            i.row.user_id for i in data.ranked[10:15]
        ]
        assert (
            await api.http.get(
                f"/api/leaderboard/user/{item.row.user_id}/around?count=99", headers=auth
            )
        ).status_code == 400

        seen: list[str] = []
        token: str | None = ""
        while token is not None:
            page = await api.http.get(
                "/api/leaderboard/entries", params={"pageSize": 50, "pageToken": token}
            )
            assert page.status_code == 200
            body = page.json()["data"]
            seen += [e["userId"] for e in body["entries"]]
            token = body["nextPageToken"]
        assert seen == [i.row.user_id for i in data.ranked]
        broken = await api.http.get("/api/leaderboard/entries", params={"pageToken": "x"})
        assert broken.status_code == 400
        assert broken.json()["code"] == "INVALID_ARGUMENT"
    finally:
        await api.close()


async def answers(board: Board, data: Dataset) -> list[Any]:
    """Every query answer over the dataset, with the fields that may differ cleared."""
    result: list[Any] = []
    token = ""
    while True:
        page = await board.entries(page_size=9, page_token=token)
        page.ClearField("update_time")
        page.ClearField("from_fallback")
        result.append(page)
        token = page.next_page_token
        if not token:
            break
    for item in data.ranked:
        result.append(await board.rank(item.row.user_id))
        result.append(await board.around(item.row.user_id, 2))
    return result


async def test_the_postgresql_fallback_answers_exactly_like_redis(
    data: Dataset, board: Board
) -> None:
    stack, keys = data.stack, data.stack.keys.board("default")
    from_redis = await answers(board, data)
    await stack.redis.delete(keys.ready)
    await stack.redis.set(keys.rebuild_lock, "held-by-the-test", px=120_000)
    try:
        assert (await board.entries()).from_fallback
        from_postgresql = await answers(board, data)
    finally:
        await stack.redis.delete(keys.rebuild_lock)
        async with await Board.as_admin(stack) as admin:
            await admin.rebuild()
    assert not (await board.entries()).from_fallback
    assert from_postgresql == from_redis


async def test_rebuilding_keeps_ties_in_the_same_order(data: Dataset, board: Board) -> None:
    before = await board.all_entries()
    async with await Board.as_admin(data.stack) as admin:
        for _ in range(2):
            assert (await admin.rebuild()).users == len(data.ranked)
            assert await board.all_entries() == before


async def test_who_may_call_what(data: Dataset, board: Board) -> None:
    stack = data.stack
    error = await refused(board.rebuild())
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    error = await refused(board.reconcile(repair=True))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    async with await Board.as_game(stack) as game:
        assert (await game.entries()).entries  # leaderboard:read
        error = await refused(game.rebuild())
        assert error.code == grpc.StatusCode.PERMISSION_DENIED

    secret = "a-watch-only-secret-for-the-test"
    hashed = await Passwords(PasswordSettings()).hash(secret)
    await AuthStore(stack.pool).save_service_account("watch-only", hashed, ("stream:watch",))
    token = await service_token(stack.address("auth"), "watch-only", secret)
    async with Board(grpc.aio.insecure_channel(stack.address("leaderboard")), token) as watcher:
        error = await refused(watcher.entries())
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        error = await refused(watcher.rank(data.ranked[0].row.user_id))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED

    anonymous = board.stub.ListEntries(pb.ListEntriesRequest(), metadata=call_metadata(None))
    error = await refused(anonymous)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
