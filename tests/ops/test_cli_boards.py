"""`scoreboard boards ...` as an operator runs it (issue 17): a separate process with the admin
service account's credentials in its environment, over gRPC to the stack: create, list, update
and close-period, refusals with their reason, and a period closed from the CLI reaching a
connected viewer of the board as the empty new period."""

from __future__ import annotations

from typing import Any

from tests.support.boards import Scored, score
from tests.support.clients import Api, Viewer
from tests.support.processes import admin_cli
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.stack_fixtures import stack_and_api

stack, api = stack_and_api(scope="module", websocket={"allow_anonymous": True})
SEASON = "season"


async def _cli(
    stack: Stack, *args: str, client: str = "admin-tool", secret: str | None = None
) -> tuple[int, Any, str]:
    return await admin_cli(stack, "boards", *args, client=client, secret=secret)


async def test_boards_cli_creates_lists_updates_and_closes_a_period(stack: Stack, api: Api) -> None:
    code, body, err = await _cli(
        stack,
        "create",
        SEASON,
        "--name",
        "Season",
        "--reset-schedule",
        "0 0 * * 1",
        "--time-zone",
        "Europe/Berlin",
    )
    assert code == 0, err
    board = body["board"]
    assert (board["board_id"], board["name"], board["time_zone"]) == (
        SEASON,
        "Season",
        "Europe/Berlin",
    )
    assert board["current_period"] == 1 and board["next_reset_time"]

    code, body, err = await _cli(stack, "create", SEASON, "--name", "Again")
    assert code == 1 and "BOARD_EXISTS" in err, err
    code, body, err = await _cli(stack, "create", "x", "--name", "Bad", "--time-zone", "Mars/Base")
    assert code == 1 and "INVALID_ARGUMENT" in err, err
    code, body, err = await _cli(stack, "list", client="game-server", secret=stack.game_secret)
    assert code == 1 and "refused" in err, err  # no admin scope: no token for the CLI

    code, body, err = await _cli(stack, "list")
    assert code == 0, err
    listed = {b["board_id"]: b for b in body["boards"]}
    assert {"default", SEASON} <= set(listed)
    assert listed[SEASON]["reset_schedule"] == "0 0 * * 1"

    code, body, err = await _cli(stack, "update", SEASON, "--name", "Spring", "--keep-periods", "4")
    assert code == 0, err
    assert (body["board"]["name"], body["board"]["keep_periods"]) == ("Spring", 4)
    assert body["board"]["reset_schedule"] == "0 0 * * 1"  # kept
    code, body, err = await _cli(stack, "update", "nope", "--name", "Nope")
    assert code == 1 and "NOT_FOUND" in err, err

    # A viewer of the board sees the close made from the CLI as the empty period 2.
    async def board_set_up() -> bool:
        keys = stack.keys.board(SEASON)
        return bool(await stack.redis.exists(keys.events)) and bool(
            await stack.redis.exists(keys.meta)
        )

    await wait_for(board_set_up, timeout=30)
    await score(stack, SEASON, 1, [Scored(12, "Ann")])
    viewer = await Viewer.open(stack.ws_url + f"?board={SEASON}")
    try:
        await viewer.wait(
            lambda m: m["type"] == "LEADERBOARD_UPDATE" and len(m["data"]["top10"]) == 1,
            timeout=20,
        )
        code, body, err = await _cli(stack, "close-period", SEASON)
        assert code == 0, err
        assert (body["period"], body["entries"]) == (1, 1)
        reset = await viewer.wait(
            lambda m: m["type"] == "LEADERBOARD_UPDATE" and m["data"]["period"] == 2, timeout=20
        )
        assert (reset["data"]["board"], reset["data"]["top10"]) == (SEASON, [])
    finally:
        await viewer.close()

    code, body, err = await _cli(stack, "list")
    season = next(b for b in body["boards"] if b["board_id"] == SEASON)
    assert (season["current_period"], season["last_closed_period"]) == (2, 1)
    assert [w["username"] for w in season["last_winners"]] == ["Ann"]
    code, body, err = await _cli(stack, "close-period", "nope")
    assert code == 1 and "NO_OPEN_PERIOD" in err, err


async def test_boards_cli_sets_and_keeps_tiers(stack: Stack, api: Api) -> None:
    tiers = "diamond:Diamond:top_percent=1,gold:Gold:top_rank=10,silver:Silver:min_score=100,"
    code, body, err = await _cli(
        stack, "create", "tiered", "--name", "Tiered", "--tiers", tiers + "bronze:Bronze"
    )
    assert code == 0, err
    shown = [
        (t["tier_id"], t["name"], t.get("top_percent"), t.get("top_rank"), t.get("min_score"))
        for t in body["board"]["tiers"]
    ]
    assert shown == [
        ("diamond", "Diamond", 1.0, None, None),
        ("gold", "Gold", None, "10", None),
        ("silver", "Silver", None, None, "100"),
        ("bronze", "Bronze", None, None, None),
    ]
    # update without --tiers keeps them; --tiers "" removes them.
    code, body, err = await _cli(stack, "update", "tiered", "--name", "Renamed")
    assert code == 0, err
    assert [t["tier_id"] for t in body["board"]["tiers"]] == ["diamond", "gold", "silver", "bronze"]
    code, body, err = await _cli(stack, "update", "tiered", "--tiers", tiers)  # no default
    assert code == 1 and "exactly one tier must be the default" in err, err
    code, body, err = await _cli(stack, "update", "tiered", "--tiers", "gold:Gold:best=3")
    assert code == 2 and "expected ID:NAME" in err, err
    code, body, err = await _cli(stack, "update", "tiered", "--tiers", "")
    assert code == 0, err
    assert body["board"].get("tiers", []) == []
