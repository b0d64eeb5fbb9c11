"""WatchTop10 per board and period through the real stack (issue 17): a board's own hub, its
snapshots naming board and period; closing the period by hand (ClosePeriod) gives the board's
watchers the new, empty period's board at once and ends a watch of the closed period; a watch
of a closed or future period is refused; an unwatched board's hub stops after a while."""

from __future__ import annotations

import asyncio

import grpc

from tests.conftest import StackFactory
from tests.stream_service.watcher import Watcher
from tests.support.boards import Scored, close_period, create_board, score
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import game_token

WEEKLY = "weekly"


def _shown(snapshot: object) -> list[tuple[int, int]]:
    return [(e.rank, e.score) for e in snapshot.entries]  # type: ignore[attr-defined]


async def _refused(stack: Stack, token: str, period: int) -> grpc.StatusCode:
    watcher = Watcher(stack.address("stream"), token, board=WEEKLY, period=period)
    try:
        await asyncio.wait_for(watcher.ended.wait(), 15)
        assert watcher.error is not None
        return watcher.error.code()
    finally:
        await watcher.close()


async def test_a_board_is_watched_across_a_reset_by_hand(stack_factory: StackFactory) -> None:
    async with stack_factory(with_edge=False, stream={"board_idle_seconds": 0.5}) as stack:
        await create_board(stack, WEEKLY, "This week", schedule="0 0 * * 1", zone="Europe/Berlin")
        await score(stack, WEEKLY, 1, [Scored(30), Scored(20)])
        token = await game_token(stack)
        follow = Watcher(stack.address("stream"), token, board=WEEKLY)
        only_first = Watcher(stack.address("stream"), token, board=WEEKLY, period=1)
        default = Watcher(stack.address("stream"), token)
        try:
            live = await follow.wait_until(lambda s: len(s.entries) == 2)
            assert (live.board_id, live.period, _shown(live)) == (WEEKLY, 1, [(1, 30), (2, 20)])
            await only_first.wait_until(lambda s: len(s.entries) == 2)
            first_default = await default.wait_until(lambda s: True)
            assert (first_default.board_id, first_default.period) == ("default", 1)
            hubs = stack.services["stream"].running.parts["hubs"]
            assert set(hubs) >= {"default", WEEKLY}

            closed = await close_period(stack, WEEKLY)
            assert (closed.period, closed.entries) == (1, 2)
            reset = await follow.wait_until(lambda s: s.period == 2)
            assert (reset.board_id, list(reset.entries)) == (WEEKLY, [])
            # Order holds across the reset; the watch of period 1 ended cleanly.
            versions = [(s.period, s.sequence) for s in follow.snapshots]
            assert versions == sorted(set(versions))
            await asyncio.wait_for(only_first.ended.wait(), 15)
            assert only_first.error is None
            assert all(s.period == 1 for s in only_first.snapshots)
            assert default.snapshots[-1].period == 1  # another board: untouched

            # The new period fills as usual.
            await score(stack, WEEKLY, 2, [Scored(5)])
            filled = await follow.wait_until(lambda s: s.period == 2 and len(s.entries) == 1)
            assert _shown(filled) == [(1, 5)]
            assert await _refused(stack, token, 1) == grpc.StatusCode.FAILED_PRECONDITION
            assert await _refused(stack, token, 7) == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await follow.close()
            await only_first.close()
            await default.close()

        # Unwatched, the board's hub stops; the default board's stays.
        await wait_for(lambda: _gone(stack, WEEKLY), timeout=15)
        assert "default" in stack.services["stream"].running.parts["hubs"]
        again = Watcher(stack.address("stream"), token, board=WEEKLY)
        try:
            back = await again.wait_until(lambda s: s.period == 2 and len(s.entries) == 1)
            assert _shown(back) == [(1, 5)]  # a new hub finds the current period by itself
        finally:
            await again.close()


async def _gone(stack: Stack, board: str) -> bool:
    return board not in stack.services["stream"].running.parts["hubs"]
