"""The period scheduler (DESIGN decision 11): keeps each board's next period in PostgreSQL before
the current one ends, closes periods that ended (the freeze and its PeriodClosed event, see
leaderboard_service.periods), lets the old period's Redis keys expire after a grace time, and
tells the rest of the service which period is current, so queries, the keeper and the WatchTop10
channel move to the new (empty) period's board at once.

Every replica may run it: the row locks in periods.py make each step happen once. Its clock is
a callable from the settings (tests move it across a reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from common.boards import Board, Clock
from common.db import Pool
from common.lifecycle import raise_if_cancelling
from common.redis_keys import BoardKeys, Keys
from common.tiers import encode_copy
from leaderboard_service.periods import (
    BoardState,
    Closed,
    CloseHook,
    board_state,
    close_period,
    due_periods,
    end_period_now,
    ensure_periods,
    list_boards,
)

log = logging.getLogger("scoreboard.scheduler")
# The Redis copy of a board's tiers is rewritten at least this often (a wiped Redis gets it back).
TIERS_REWRITE_SECONDS = 60.0
CLOSED = Counter("scoreboard_periods_closed_total", "Periods frozen into the archive.", ["board"])
CLOSE_SECONDS = Histogram(
    "scoreboard_period_close_seconds",
    "Time to freeze a period's standings.",
    buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)


class BoardBook:
    """The boards this process knows and the period open now on each (what a request without a
    period means). Filled by the scheduler; boards of the settings are known from the start."""

    def __init__(self, keys: Keys, configured: tuple[str, ...]) -> None:
        self._keys = keys
        self._order: list[str] = list(configured)
        self._current: dict[str, int] = dict.fromkeys(configured, 1)
        self._states: dict[str, BoardState] = {}

    @property
    def default(self) -> str:
        return self._order[0]

    def boards(self) -> tuple[str, ...]:
        return tuple(self._order)

    def knows(self, board: str) -> bool:
        return board in self._current

    def period(self, board: str) -> int:
        return self._current.get(board, 1)

    def keys(self, board: str, period: int = 0) -> BoardKeys:
        return self._keys.board(board, period or self.period(board), asc=self.asc(board))

    def asc(self, board: str) -> bool:
        """Whether the board ranks lower totals first (its sort order cannot change once it
        has scores, so what this process read stays true)."""
        state = self._states.get(board)
        return state is not None and state.board.sort_order == "asc"

    def state(self, board: str) -> BoardState | None:
        return self._states.get(board)

    def update(self, state: BoardState) -> tuple[bool, bool]:
        """Record a board's state; (new board, new current period)."""
        board = state.board.id
        new_board = board not in self._current
        if new_board:
            self._order.append(board)
        self._states[board] = state
        number = state.current.number if state.current is not None else self.period(board)
        changed = self._current.get(board) != number
        self._current[board] = number
        return new_board, changed and not new_board


class PeriodScheduler:
    def __init__(
        self,
        pool: Pool,
        redis: aioredis.Redis,
        book: BoardBook,
        *,
        clock: Clock,
        interval_seconds: float = 5.0,
        grace_seconds: float = 3600.0,
        on_new_board: Callable[[str], None] | None = None,
        on_new_period: Callable[[str, int], None] | None = None,
        fault: CloseHook | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._book = book
        self._clock = clock
        self._interval = interval_seconds
        self._grace = grace_seconds
        self._on_new_board = on_new_board
        self._on_new_period = on_new_period
        self._fault = fault
        self._wake = asyncio.Event()
        # What this process last wrote as each board's Redis copy of its tiers, and when.
        self._tiers_written: dict[str, tuple[bytes, float]] = {}

    def now(self) -> datetime:
        return self._clock()

    def wake(self) -> None:
        self._wake.set()

    async def tick(self) -> list[Closed]:
        """One pass over every board; returns the periods it closed."""
        now = self._clock()
        closed: list[Closed] = []
        for board in await list_boards(self._pool):
            closed += await self._board_pass(board, now)
        return closed

    async def _board_pass(self, board: Board, now: datetime) -> list[Closed]:
        await ensure_periods(self._pool, board.id, now)
        await self._refresh(board.id, now)
        closed: list[Closed] = []
        for period in await due_periods(self._pool, board.id, now):
            done = await self._close(board.id, period, now)
            if done is not None:
                closed.append(done)
        return closed

    async def refresh(self, board: str) -> None:
        """Read the board's definition and periods again now (after an admin changed it)."""
        await self._refresh(board, self._clock())

    async def _refresh(self, board: str, now: datetime) -> None:
        state = await board_state(self._pool, board, now)
        if state is None:
            return
        await self._copy_tiers(state.board)
        new_board, new_period = self._book.update(state)
        if new_board and self._on_new_board is not None:
            self._on_new_board(board)
        if new_period and self._on_new_period is not None and state.current is not None:
            log.info("new period", extra={"board": board, "period": state.current.number})
            self._on_new_period(board, state.current.number)

    async def _copy_tiers(self, board: Board) -> None:
        """The board's tiers into Redis for stream_service's rank hub (BoardKeys.tiers), when
        they changed or the last write is a minute old."""
        data = encode_copy(board.tiers, asc=board.sort_order == "asc")
        loop = asyncio.get_running_loop()
        written = self._tiers_written.get(board.id)
        fresh = written is not None and loop.time() - written[1] < TIERS_REWRITE_SECONDS
        if fresh and written is not None and written[0] == data:
            return
        await self._redis.set(self._book.keys(board.id).tiers, data)
        self._tiers_written[board.id] = (data, loop.time())

    async def _close(self, board: str, period: int, now: datetime) -> Closed | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        done = await close_period(self._pool, board, period, now, fault=self._fault)
        if done is None:
            return None
        CLOSE_SECONDS.observe(loop.time() - started)
        CLOSED.labels(board).inc()
        # The live keys of the closed period stay readable for a while, then go.
        keys = self._book.keys(board, period)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys.period_keys:
                pipe.expire(key, max(1, int(self._grace)))
            await pipe.execute()
        return done

    async def close_now(self, board: str) -> Closed | None:
        """Close the board's open period now (by hand): the next one starts at once."""
        now = self._clock()
        period = await end_period_now(self._pool, board, now)
        await self._refresh(board, now)
        return await self._close(board, period, now)

    def _sleep_for(self) -> float:
        """Until the nearest end of a current period, at most the interval."""
        now = self._clock()
        delay = self._interval
        for board in self._book.boards():
            state = self._book.state(board)
            if state is not None and state.current is not None and state.current.ends_at:
                delay = min(delay, (state.current.ends_at - now).total_seconds())
        return max(0.05, delay)

    async def run(self) -> None:
        delay = 0.5
        while True:
            raise_if_cancelling()
            try:
                await self.tick()
                delay = 0.5
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._sleep_for())
                self._wake.clear()
            except Exception as exc:
                raise_if_cancelling()
                log.warning("period scheduler pass failed; retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
