"""`make run`'s weekly board (issue 17), set up by ops.dev_boards against a test stack through the
admin path: created once with its schedule, every catalog action counting on it, a second start
changing nothing; a completion counting on both boards, and a close by hand freezing exactly the
standings the live board showed, read back through gRPC and REST. tools/smoke.py runs the same
against the real `make run`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from common.config import ClientCredentials, Endpoints
from ops.dev_boards import DevBoard, Seeded, ensure_dev_board
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2 as sc
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.support.clients import Api
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.stack_fixtures import stack_and_api
from tests.support.tokens import admin_metadata

stack, api = stack_and_api(scope="module")
WEEKLY = DevBoard().board_id


def _endpoints(stack: Stack) -> Endpoints:
    return Endpoints(
        auth=stack.address("auth"),
        score=stack.address("score"),
        leaderboard=stack.address("leaderboard"),
        stream=stack.address("stream"),
    )


def _admin(stack: Stack) -> ClientCredentials:
    return ClientCredentials("admin-tool", stack.admin_secret)


async def _board_rpc(stack: Stack, method: str, request: Any) -> Any:
    async with grpc.aio.insecure_channel(stack.address("leaderboard")) as channel:
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        return await getattr(stub, method)(
            request, metadata=await admin_metadata(stack), timeout=10
        )


async def _catalog(stack: Stack) -> list[sc.Action]:
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        reply = await score_service_pb2_grpc.ScoreServiceStub(channel).ListActions(
            sc.ListActionsRequest(include_inactive=True),
            metadata=await admin_metadata(stack),
            timeout=10,
        )
    return list(reply.actions)


async def _top10(api: Api, board: str, expected: dict[str, int]) -> list[dict[str, Any]]:
    """The board's live top 10 (REST) once it holds exactly `expected` (user id -> score)."""
    shown: list[dict[str, Any]] = []

    async def showing() -> bool:
        nonlocal shown
        reply = await api.http.get("/api/leaderboard", params={"board": board})
        assert reply.status_code == 200, reply.text
        shown = reply.json()["data"]["top10"]
        return {e["userId"]: e["score"] for e in shown} == expected

    await wait_for(showing, timeout=15)
    return shown


async def test_the_weekly_board_is_set_up_once_and_every_action_counts_on_it(
    stack: Stack,
) -> None:
    first = await ensure_dev_board(_endpoints(stack), _admin(stack))
    catalog = await _catalog(stack)
    assert first.created
    assert sorted(first.linked) == sorted(a.action_id for a in catalog)
    assert all(list(a.board_ids) == [WEEKLY] for a in catalog)
    board = (await _board_rpc(stack, "GetBoard", lb.GetBoardRequest(board_id=WEEKLY))).board
    assert (board.name, board.reset_schedule, board.time_zone) == (
        "This week",
        "0 0 * * 1",
        "Europe/Berlin",
    )
    assert board.next_reset_time.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    # A second start (and a third) creates nothing and changes no action.
    for _ in range(2):
        assert await ensure_dev_board(_endpoints(stack), _admin(stack)) == Seeded(False, ())
    listed = await _board_rpc(stack, "ListBoards", lb.ListBoardsRequest(page_size=100))
    assert sorted(b.board_id for b in listed.boards) == ["default", WEEKLY]
    assert all(list(a.board_ids) == [WEEKLY] for a in await _catalog(stack))


async def test_a_completion_counts_on_both_and_a_close_freezes_what_the_board_showed(
    stack: Stack, api: Api
) -> None:
    await ensure_dev_board(_endpoints(stack), _admin(stack))
    first, second = await api.register(), await api.register()
    assert (await api.complete(first, "daily-login")).status_code == 200
    assert (await api.complete(second, "win-match")).status_code == 200
    before = (await _board_rpc(stack, "GetBoard", lb.GetBoardRequest(board_id=WEEKLY))).board
    period = before.current_period
    # Both boards count both completions (this module's stack has no other players).
    scores = {first.user_id: 10, second.user_id: 25}
    await _top10(api, "default", scores)
    shown = await _top10(api, WEEKLY, scores)
    assert [e["userId"] for e in shown] == [second.user_id, first.user_id]

    closed = await _board_rpc(stack, "ClosePeriod", lb.ClosePeriodRequest(board_id=WEEKLY))
    assert (closed.period, closed.entries) == (period, 2)

    frozen = await _board_rpc(
        stack,
        "ListPeriodEntries",
        lb.ListPeriodEntriesRequest(board_id=WEEKLY, period=period, page_size=100),
    )
    assert [(e.rank, e.user_id, e.username, e.score) for e in frozen.entries] == [
        (e["rank"], e["userId"], e["username"], e["score"]) for e in shown
    ]
    reply = await api.http.get(f"/api/boards/{WEEKLY}/periods/{period}/entries")
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"]["entries"] == shown
    assert await _top10(api, WEEKLY, {}) == []
    after = (await api.http.get(f"/api/boards/{WEEKLY}")).json()["data"]
    assert after["currentPeriod"] == period + 1 and after["lastClosedPeriod"] == period
    assert after["lastWinners"] == shown
    await _top10(api, "default", scores)  # the all-time board keeps them


async def test_a_refused_admin_account_stops_the_start_with_the_reason(stack: Stack) -> None:
    wrong = ClientCredentials("admin-tool", "not-the-secret")
    with pytest.raises(RuntimeError, match=f"setting up the {WEEKLY} board"):
        await ensure_dev_board(_endpoints(stack), wrong)
