"""The snapshot hubs of this process, one per board in use (DESIGN decision 6, per board).

The default board's hub (and those of boards named in the settings) runs for the life of the
process. Any other board's hub starts with its first watcher and stops once it has had none for
`idle_seconds`, so a replica holds subscriptions only for the boards someone watches. A board is
known when leaderboard_service has set it up in Redis (its event stream, made for every board
its consumers read, or its period stream); any other id is NOT_FOUND. At most `max_boards` hubs
run at once (RESOURCE_EXHAUSTED past that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc
import redis.asyncio as aioredis
from prometheus_client import Gauge

from common.boards import BOARD_ID
from common.errors import Reason, ServiceError, invalid, not_found, unavailable
from common.lifecycle import cancel_and_wait, sweep_forever
from common.redis_keys import Keys
from stream_service.hub import SnapshotHub

log = logging.getLogger("scoreboard.hubs")

BOARD_HUBS = Gauge("scoreboard_stream_board_hubs", "Snapshot hubs running (boards watched).")


class HubRegistry:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        resident: tuple[str, ...],
        probe_seconds: float = 15.0,
        idle_seconds: float = 60.0,
        max_boards: int = 1000,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._resident = frozenset(resident)
        self._probe_seconds = probe_seconds
        self._idle_seconds = idle_seconds
        self._max_boards = max_boards
        # Running hubs by board (tests and metrics read it).
        self.hubs: dict[str, SnapshotHub] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, int] = {}
        self._idle_since: dict[str, float] = {}
        self._closed = False
        for board in resident:
            self._start(board)

    @property
    def closed(self) -> bool:
        return self._closed

    def _start(self, board: str) -> SnapshotHub:
        hub = SnapshotHub(self._redis, self._keys.board(board), probe_seconds=self._probe_seconds)
        self.hubs[board] = hub
        self._tasks[board] = asyncio.create_task(hub.run(), name=f"snapshot-hub:{board}")
        self._idle_since[board] = time.monotonic()
        BOARD_HUBS.set(len(self.hubs))
        return hub

    async def _known(self, board: str) -> bool:
        board_keys = self._keys.board(board)
        try:
            found = await self._redis.exists(board_keys.events, board_keys.period_events)
        except (OSError, aioredis.RedisError) as exc:
            raise unavailable("boards cannot be looked up right now; try again") from exc
        return bool(found)

    async def acquire(self, board: str) -> SnapshotHub:
        """The board's hub, counted as watched until `release`; started when none runs."""
        if self._closed:
            raise unavailable("stream_service is shutting down")
        hub = self.hubs.get(board)
        if hub is None:
            if not BOARD_ID.match(board):
                raise invalid("board_id must be a board id")
            if not await self._known(board):
                raise not_found(Reason.NOT_FOUND, f"no board {board}")
            hub = self.hubs.get(board)  # started by another watcher meanwhile
            if hub is None:
                if len(self.hubs) >= self._max_boards:
                    raise ServiceError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        Reason.RATE_LIMITED,
                        f"this replica streams at most {self._max_boards} boards at once",
                    )
                hub = self._start(board)
        self._watchers[board] = self._watchers.get(board, 0) + 1
        self._idle_since.pop(board, None)
        return hub

    def release(self, board: str) -> None:
        left = self._watchers.get(board, 1) - 1
        if left > 0:
            self._watchers[board] = left
            return
        self._watchers.pop(board, None)
        self._idle_since[board] = time.monotonic()

    def sweep(self, now: float | None = None) -> list[str]:
        """Stop the hubs of boards unwatched for idle_seconds; returns them."""
        now = time.monotonic() if now is None else now
        stopped = []
        for board, since in tuple(self._idle_since.items()):
            if board in self._resident or now - since < self._idle_seconds:
                continue
            del self._idle_since[board]
            self.hubs.pop(board).close()
            self._tasks.pop(board).cancel()
            stopped.append(board)
        if stopped:
            BOARD_HUBS.set(len(self.hubs))
            log.info("idle board hubs stopped", extra={"boards": stopped})
        return stopped

    async def run(self) -> None:
        """Sweep idle hubs until cancelled; then stop every hub."""
        try:
            await sweep_forever(self.sweep, self._idle_seconds)
        finally:
            self.close()
            with contextlib.suppress(Exception):
                await cancel_and_wait(*self._tasks.values())

    def close(self) -> None:
        """End every watch (shutdown)."""
        self._closed = True
        for hub in self.hubs.values():
            hub.close()
