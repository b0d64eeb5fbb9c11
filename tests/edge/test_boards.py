"""Boards and periods over REST through the real stack (issue 17): GET /api/boards, ?board= and
&period= on the leaderboard routes (the default board's open period when absent), a board's
periods and a closed period's final standings page by page, errors in the envelope (unknown
board 404, bad period 400, open period PERIOD_NOT_CLOSED), and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from tests.support.boards import Scored, close_period, create_board, score
from tests.support.clients import Api
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.stack_fixtures import stack_and_api

stack, api = stack_and_api(scope="module")

WEEKLY = "weekly"
DAILY = "daily"


def _error(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["success"] is False and body["code"] == code, body
    assert body["error"]


async def _top(api: Api, query: str) -> dict[str, Any]:
    reply = await api.http.get(f"/api/leaderboard?{query}")
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


async def test_boards_periods_and_the_archive_over_rest(stack: Stack, api: Api) -> None:
    info = await create_board(
        stack, WEEKLY, "This week", schedule="0 0 * * 1", zone="Europe/Berlin"
    )
    assert info.current_period == 1
    rows = [Scored(50, "Ann"), Scored(40, "Bob"), Scored(30, "Cid")]
    await score(stack, WEEKLY, 1, rows)

    listed = await api.http.get("/api/boards")
    assert listed.status_code == 200, listed.text
    boards = {b["boardId"]: b for b in listed.json()["data"]}
    weekly = boards[WEEKLY]
    assert weekly["name"] == "This week"
    assert (weekly["sortOrder"], weekly["combine"]) == ("desc", "sum")
    assert (weekly["resetSchedule"], weekly["timeZone"]) == ("0 0 * * 1", "Europe/Berlin")
    assert weekly["currentPeriod"] == 1
    assert weekly["periodStartsAt"].endswith("Z") and weekly["nextResetAt"].endswith("Z")
    assert weekly["periodStartsAt"] < weekly["nextResetAt"]
    default = boards["default"]
    assert (default["resetSchedule"], default["nextResetAt"], default["currentPeriod"]) == (
        None,
        None,
        1,
    )

    # ?board= reads that board; without it, the default board as before.
    async def shown() -> bool:
        return len((await _top(api, f"board={WEEKLY}"))["top10"]) == 3

    await wait_for(shown, timeout=20)
    top = await _top(api, f"board={WEEKLY}")
    assert [(e["rank"], e["username"], e["score"]) for e in top["top10"]] == [
        (1, "Ann", 50),
        (2, "Bob", 40),
        (3, "Cid", 30),
    ]
    assert top["board"] == WEEKLY
    assert (await _top(api, ""))["board"] == "default"
    page = (await api.http.get(f"/api/leaderboard/entries?board={WEEKLY}&pageSize=2")).json()
    assert [e["score"] for e in page["data"]["entries"]] == [50, 40]
    assert page["data"]["totalUsers"] == 3
    token = page["data"]["nextPageToken"]
    rest = await api.http.get(f"/api/leaderboard/entries?board={WEEKLY}&pageToken={token}")
    assert [e["score"] for e in rest.json()["data"]["entries"]] == [30]

    # Errors in the envelope.
    _error(await api.http.get("/api/leaderboard?board=nope"), 404, "NOT_FOUND")
    _error(await api.http.get("/api/leaderboard?board=Bad!"), 400, "INVALID_ARGUMENT")
    _error(await api.http.get(f"/api/leaderboard?board={WEEKLY}&period=x"), 400, "INVALID_ARGUMENT")
    _error(
        await api.http.get(f"/api/leaderboard?board={WEEKLY}&period=-1"), 400, "INVALID_ARGUMENT"
    )
    _error(await api.http.get("/api/leaderboard/entries?board=nope"), 404, "NOT_FOUND")
    _error(await api.http.get("/api/boards/nope/periods"), 404, "NOT_FOUND")
    _error(await api.http.get(f"/api/boards/{WEEKLY}/periods/1/entries"), 400, "PERIOD_NOT_CLOSED")

    # Closing the week by hand: the archive answers, the live board is the empty period 2.
    closed = await close_period(stack, WEEKLY)
    assert (closed.period, closed.entries) == (1, 3)
    periods = (await api.http.get(f"/api/boards/{WEEKLY}/periods")).json()["data"]
    by_number = {p["period"]: p for p in periods["periods"]}
    assert [p["period"] for p in periods["periods"]][:2] in ([3, 2], [2, 1])
    assert by_number[1]["closed"] is True and by_number[1]["entries"] == 3
    assert by_number[1]["closedAt"] and by_number[1]["endsAt"]
    assert by_number[2]["closed"] is False
    one = await api.http.get(f"/api/boards/{WEEKLY}/periods?pageSize=1")
    assert one.json()["data"]["nextPageToken"]

    first = (await api.http.get(f"/api/boards/{WEEKLY}/periods/1/entries?pageSize=2")).json()
    assert first["data"]["period"]["period"] == 1
    assert [e["username"] for e in first["data"]["entries"]] == ["Ann", "Bob"]
    more = await api.http.get(
        f"/api/boards/{WEEKLY}/periods/1/entries?pageSize=2"
        f"&pageToken={first['data']['nextPageToken']}"
    )
    assert [e["username"] for e in more.json()["data"]["entries"]] == ["Cid"]
    assert more.json()["data"]["nextPageToken"] is None
    mine = await api.http.get(
        f"/api/boards/{WEEKLY}/periods/1/entries?pageSize=2&userId={rows[2].user_id}"
    )
    assert mine.json()["data"]["userEntry"] == {
        "rank": 3,
        "userId": rows[2].user_id,
        "username": "Cid",
        "score": 30,
    }
    _error(await api.http.get(f"/api/boards/{WEEKLY}/periods/99/entries"), 404, "NOT_FOUND")
    _error(await api.http.get(f"/api/boards/{WEEKLY}/periods/0/entries"), 400, "INVALID_ARGUMENT")
    _error(
        await api.http.get(f"/api/boards/{WEEKLY}/periods/1/entries?userId=x"),
        400,
        "INVALID_ARGUMENT",
    )

    archived = await _top(api, f"board={WEEKLY}&period=1")
    assert [e["score"] for e in archived["top10"]] == [50, 40, 30]
    assert archived["period"] == 1

    async def emptied() -> bool:
        return not (await _top(api, f"board={WEEKLY}"))["top10"]

    await wait_for(emptied, timeout=20)
    board = (await api.http.get(f"/api/boards/{WEEKLY}")).json()["data"]
    assert (board["currentPeriod"], board["lastClosedPeriod"]) == (2, 1)
    assert [w["username"] for w in board["lastWinners"]] == ["Ann", "Bob", "Cid"]

    # A signed-in user reads a rank in the archived period.
    player = await api.register()
    rank = await api.http.get(
        f"/api/leaderboard/user/{rows[1].user_id}?board={WEEKLY}&period=1", headers=player.auth
    )
    assert rank.status_code == 200, rank.text
    assert (rank.json()["data"]["rank"], rank.json()["data"]["score"]) == (2, 40)


async def test_the_open_period_is_named_at_once_after_a_close(stack: Stack, api: Api) -> None:
    # No viewer holds this board's stream on the edge: GET /api/leaderboard asks
    # leaderboard_service, which names the period it read.
    await create_board(stack, DAILY, "Today", schedule="0 0 * * *", zone="UTC")
    await score(stack, DAILY, 1, [Scored(7, "Dee")])

    async def shown() -> bool:
        return len((await _top(api, f"board={DAILY}"))["top10"]) == 1

    await wait_for(shown, timeout=20)
    assert (await _top(api, f"board={DAILY}"))["period"] == 1

    closed = await close_period(stack, DAILY)
    assert closed.period == 1
    top = await _top(api, f"board={DAILY}")
    assert (top["board"], top["period"], top["top10"]) == (DAILY, 2, [])
    assert (await _top(api, f"board={DAILY}&period=1"))["period"] == 1


async def test_openapi_describes_boards_and_the_board_parameters(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/api/boards",
        "/api/boards/{boardId}",
        "/api/boards/{boardId}/periods",
        "/api/boards/{boardId}/periods/{period}/entries",
    ):
        assert "get" in paths[path], path
    for path in ("/api/leaderboard", "/api/leaderboard/entries", "/api/leaderboard/user/{userId}"):
        names = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert {"board", "period"} <= names, path
    board_info = doc["components"]["schemas"]["BoardInfo"]["properties"]
    assert {"boardId", "currentPeriod", "nextResetAt", "resetSchedule", "timeZone"} <= set(
        board_info
    )
    assert "404" in paths["/api/boards/{boardId}/periods"]["get"]["responses"]
