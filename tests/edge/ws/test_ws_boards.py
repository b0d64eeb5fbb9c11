"""The WebSocket per board through the real stack (issue 17): a viewer chooses the board on
connect (/ws?board=ID) or later (SUBSCRIBE), LEADERBOARD_UPDATE names its board and period,
closing the board's period by hand gives its viewers the empty new period's board at once (and
nothing to the viewers of another board), and the edge holds one upstream stream per board in
use, closing an unused one after a while."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.conftest import StackFactory
from tests.support.boards import Scored, close_period, create_board, score
from tests.support.clients import Viewer
from tests.support.servers import wait_for
from tests.support.stack import Stack, edge_state

WEEKLY = "weekly"


def _update(board: str, period: int, size: int | None = None) -> Any:
    def matches(m: dict[str, Any]) -> bool:
        if m["type"] != "LEADERBOARD_UPDATE":
            return False
        data = m["data"]
        return bool(
            data["board"] == board
            and data["period"] == period
            and (size is None or len(data["top10"]) == size)
        )

    return matches


async def _subscribe(viewer: Viewer, board: str) -> None:
    message = {"type": "SUBSCRIBE", "data": {"board": board}}
    await viewer.connection.send(orjson.dumps(message).decode())


async def test_viewers_choose_a_board_and_see_its_reset(stack_factory: StackFactory) -> None:
    websocket = {"allow_anonymous": True, "board_idle_seconds": 0.5}
    async with stack_factory(websocket=websocket) as stack:
        await create_board(stack, WEEKLY, "This week", schedule="0 0 * * 1", zone="Europe/Berlin")
        await score(stack, WEEKLY, 1, [Scored(30, "Ann"), Scored(20, "Bob")])

        weekly = await Viewer.open(stack.ws_url + f"?board={WEEKLY}")
        switcher = await Viewer.open(stack.ws_url)
        bystander = await Viewer.open(stack.ws_url)
        try:
            first = await weekly.wait(_update(WEEKLY, 1, 2), timeout=20)
            assert [(e["rank"], e["username"], e["score"]) for e in first["data"]["top10"]] == [
                (1, "Ann", 30),
                (2, "Bob", 20),
            ]
            await switcher.wait(_update("default", 1))
            await bystander.wait(_update("default", 1))
            assert set(edge_state(stack).boards.boards()) == {"default", WEEKLY}

            # SUBSCRIBE moves a socket to another board: SUBSCRIBED, then its newest board.
            await _subscribe(switcher, WEEKLY)
            await switcher.wait(lambda m: m["type"] == "SUBSCRIBED")
            await switcher.wait(_update(WEEKLY, 1, 2))
            await _subscribe(switcher, "nope")
            refused = await switcher.wait(lambda m: m["type"] == "ERROR")
            assert refused["data"]["code"] == "NOT_FOUND"
            await _subscribe(switcher, "Not A Board!")
            invalid = await switcher.wait(
                lambda m: m["type"] == "ERROR" and m["data"]["code"] == "INVALID_ARGUMENT"
            )
            assert invalid

            # Closing the week by hand: both viewers of the board get the empty period 2.
            closed = await close_period(stack, WEEKLY)
            assert closed.period == 1
            for viewer in (weekly, switcher):
                reset = await viewer.wait(_update(WEEKLY, 2, 0), timeout=20)
                assert reset["data"]["top10"] == []
                assert viewer.connection.close_code is None
            await asyncio.sleep(0.3)
            assert all(u["board"] == "default" for u in bystander.updates())

            # The new period fills as usual, for the board's viewers only.
            await score(stack, WEEKLY, 2, [Scored(9, "Cid")])
            await weekly.wait(_update(WEEKLY, 2, 1), timeout=20)
            await switcher.wait(_update(WEEKLY, 2, 1), timeout=20)
            assert all(u["board"] == "default" for u in bystander.updates())
        finally:
            for viewer in (weekly, switcher, bystander):
                await viewer.close()

        # Nobody watches the week any more: its upstream stream is closed after a while.
        await wait_for(lambda: _streams(stack, {"default"}), timeout=15)


async def test_an_unknown_board_is_refused_at_the_handshake(stack_factory: StackFactory) -> None:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        viewer = await Viewer.open(stack.ws_url + "?board=nope")
        try:
            error = await viewer.wait(lambda m: m["type"] == "ERROR")
            assert error["data"]["code"] == "NOT_FOUND"
            await asyncio.wait_for(viewer.connection.wait_closed(), 10)
            assert viewer.connection.close_code == 4404
        finally:
            await viewer.close()


async def _streams(stack: Stack, expected: set[str]) -> bool:
    return set(edge_state(stack).boards.boards()) == expected
