"""The boards this edge process streams, and the boards that exist (issue 17).

`LiveBoards` holds one upstream WatchTop10 stream per board in use on this process: the default
board's for the life of the process, any other board's from its first viewer until it has had
no viewer (and no reader of its cached top 10) for `idle_seconds`. Each stream's snapshots go to
that board's group of the fan-out.

`BoardCatalog` knows which boards exist (ListBoards, with the edge's own identity), refreshed
at most every `refresh_seconds` and at most once a second when asked about a board it does not
know, so a board created a moment ago is found and an unknown one costs no call per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

from common.config import DEFAULT_BOARD
from common.errors import ServiceError
from common.lifecycle import cancel_and_wait, sweep_forever
from edge.fanout import FanOut
from edge.live import Board, LiveBoard
from edge.upstream import Upstream
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

log = logging.getLogger("scoreboard.edge.boards")

BOARD_STREAMS = Gauge("scoreboard_edge_board_streams", "Upstream WatchTop10 streams (boards).")
_MISS_REFRESH_SECONDS = 1.0
_MAX_BOARDS_LISTED = 1000


class LiveBoards:
    def __init__(
        self,
        upstream: Upstream,
        fanout: FanOut,
        default: LiveBoard,
        *,
        idle_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._fanout = fanout
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._boards: dict[str, LiveBoard] = {DEFAULT_BOARD: default}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._used: dict[str, float] = {}
        BOARD_STREAMS.set(1)

    @property
    def default(self) -> LiveBoard:
        return self._boards[DEFAULT_BOARD]

    def get(self, board: str) -> LiveBoard | None:
        """The board's stream when this process has one open (its cached top 10 is current)."""
        live = self._boards.get(board)
        if live is not None:
            self._used[board] = self._clock()
        return live

    def open(self, board: str) -> LiveBoard:
        """The board's stream, opened when this process has none."""
        live = self.get(board)
        if live is not None:
            return live

        def on_board(snapshot: Board) -> None:
            self._fanout.publish(snapshot.frame, board)

        live = LiveBoard(self._upstream, on_board, board=board)
        self._boards[board] = live
        self._tasks[board] = asyncio.create_task(live.run(), name=f"watch-top10:{board}")
        self._used[board] = self._clock()
        BOARD_STREAMS.set(len(self._boards))
        log.info("board stream opened", extra={"board": board})
        return live

    def sweep(self) -> list[str]:
        """Close the streams of boards without a viewer for idle_seconds; returns them."""
        now = self._clock()
        closed = []
        for board in tuple(self._tasks):
            if self._fanout.viewers_of(board):
                self._used[board] = now
                continue
            if now - self._used.get(board, now) < self._idle_seconds:
                continue
            self._tasks.pop(board).cancel()
            del self._boards[board]
            self._used.pop(board, None)
            self._fanout.drop_board(board)
            closed.append(board)
        if closed:
            BOARD_STREAMS.set(len(self._boards))
            log.info("idle board streams closed", extra={"boards": closed})
        return closed

    def boards(self) -> tuple[str, ...]:
        return tuple(self._boards)

    async def run(self) -> None:
        """Sweep idle streams until cancelled; then close every stream this registry opened."""
        try:
            await sweep_forever(self.sweep, self._idle_seconds)
        finally:
            await cancel_and_wait(*self._tasks.values())


class BoardCatalog:
    def __init__(
        self,
        upstream: Upstream,
        *,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._known: frozenset[str] = frozenset({DEFAULT_BOARD})
        self._loaded_at = -1e18
        self._lock = asyncio.Lock()

    async def _load(self) -> None:
        found: set[str] = set()
        token = ""
        while len(found) < _MAX_BOARDS_LISTED:
            reply = await self._upstream.call_as_edge(
                self._upstream.leaderboard.ListBoards,
                pb.ListBoardsRequest(page_size=100, page_token=token),
            )
            found.update(b.board_id for b in reply.boards)
            token = reply.next_page_token
            if not token:
                break
        self._known = frozenset(found | {DEFAULT_BOARD})
        self._loaded_at = self._clock()

    async def exists(self, board: str) -> bool:
        """Whether the board exists. The default board always does (no call). A failed lookup
        keeps the boards known before; for any other it raises the upstream's ServiceError."""
        if board == DEFAULT_BOARD:
            return True
        age = self._clock() - self._loaded_at
        if board in self._known and age < self._refresh_seconds:
            return True
        if board not in self._known and age < _MISS_REFRESH_SECONDS:
            return False
        async with self._lock:
            if self._clock() - self._loaded_at >= _MISS_REFRESH_SECONDS:
                try:
                    await self._load()
                except ServiceError:
                    if board not in self._known:
                        raise
        return board in self._known
