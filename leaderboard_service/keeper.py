"""Keeps each board's ranking complete: rebuilds it at start when it is not ready, whenever the
consumer reports it missing (Redis wiped), and when the periodic check finds certain drift.

The periodic check is cheap enough for a million users and tolerant of events in flight:
- Redis is counted before PostgreSQL, so more ranked users in Redis than in PostgreSQL is drift;
- fewer ranked users in Redis than PostgreSQL had one whole check earlier is drift (users only
  join the ranking; a healthy consumer catches up within seconds);
- a user among PostgreSQL's top 100 with the same version in Redis but another state is drift;
- a user whose score changed since the previous check (up to a grace period ago, the events in
  flight) but whose Redis version is older lost an event after it was committed (a dead letter,
  an acknowledged write lost in a Redis failover while `ready` survived): that user alone is
  repaired from PostgreSQL, with the version guard, so a newer event always wins.
Each check's window starts a grace period before the previous one ended (a commit may become
visible a little after its updated_at), and ends a grace period before PostgreSQL's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge
from redis.exceptions import ResponseError

from common.lifecycle import raise_if_cancelling
from common.redis_keys import BoardKeys
from leaderboard_service.rebuild import apply_states, rebuild_when_free, repair_users
from leaderboard_service.reconcile import count_check, database_clock, sample_check, version_check
from leaderboard_service.stores import Stores

log = logging.getLogger("scoreboard.keeper")
DRIFT = Gauge(
    "scoreboard_ranking_drift_users", "Ranked users in PostgreSQL minus in Redis.", ["board"]
)
REPAIRS = Counter(
    "scoreboard_ranking_drift_repairs_total", "Rebuilds started by the periodic check.", ["board"]
)
BEHIND = Counter(
    "scoreboard_ranking_users_behind_total",
    "Users the periodic check found behind PostgreSQL's version beyond the grace window.",
    ["board"],
)


def count_drift(in_redis: int, in_db: int, previous: int | None) -> str:
    """Why the counts prove drift, or "" when they may only be events in flight. `in_redis` was
    read before `in_db`; `previous` is PostgreSQL's count at the previous check."""
    if in_redis > in_db:
        return "more ranked users in Redis than in PostgreSQL"
    if previous is not None and in_redis < min(previous, in_db):
        return "Redis still misses users PostgreSQL had at the previous check"
    return ""


class RankingKeeper:
    def __init__(
        self,
        stores: Stores,
        *,
        check_seconds: float,
        grace_seconds: float = 5.0,
        period_of: Callable[[str], int] | None = None,
        keys_of: Callable[[str], BoardKeys] | None = None,
    ) -> None:
        self._pool = stores.pool
        self._redis = stores.redis
        self._scripts = stores.scripts
        self._keys = stores.keys
        self._boards = list(stores.boards)
        # The period open now on a board (its live ranking); 1 without a scheduler.
        self._period_of = period_of or (lambda _board: 1)
        # The live keys of a board (its period open now and its sort order), when known.
        self._keys_of = keys_of
        self._check_seconds = check_seconds
        self._grace = timedelta(seconds=grace_seconds)
        self._wake = asyncio.Event()
        # PostgreSQL's count at the previous check, per board and period.
        self._previous: dict[BoardKeys, int] = {}
        # Where the next version check's window starts (PostgreSQL's clock), per board and
        # period.
        self._since: dict[BoardKeys, datetime] = {}

    def _board_keys(self, board: str) -> BoardKeys:
        if self._keys_of is not None:
            return self._keys_of(board)
        return self._keys.board(board, self._period_of(board))

    def add_board(self, board: str) -> None:
        """Keep a board created after the start ready too."""
        if board not in self._boards:
            self._boards.append(board)
        self._wake.set()

    def request_check(self) -> None:
        self._wake.set()

    async def repair_users(self, board: str, users: Collection[str]) -> int:
        """Replace these users' ranking entries by their PostgreSQL state where Redis is behind
        (a dead-lettered event). Returns the users repaired."""
        keys = self._board_keys(board)
        return await repair_users(self._pool, self._scripts, keys, users, cause="dead_letter")

    async def ensure_ready(self) -> None:
        for board in self._boards:
            keys = self._board_keys(board)
            if not await self._redis.exists(keys.ready):
                log.info("ranking not ready; rebuilding from PostgreSQL", extra={"board": board})
                self._previous.pop(keys, None)
                await rebuild_when_free(self._pool, self._redis, self._scripts, keys)

    async def run(self) -> None:
        interval = self._check_seconds if self._check_seconds > 0 else 3600.0
        delay = 0.5
        while True:
            raise_if_cancelling()
            try:
                await self.ensure_ready()
                delay = 0.5
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                if self._wake.is_set():
                    self._wake.clear()
                elif self._check_seconds > 0:
                    await self.check_drift()
            except Exception as exc:
                raise_if_cancelling()
                log.warning("ranking keeper step failed; retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def check_drift(self) -> list[str]:
        """Check every ready board; rebuild those with certain drift. Returns them."""
        repaired: list[str] = []
        for board in self._boards:
            keys = self._board_keys(board)
            if not await self._redis.exists(keys.ready):
                continue
            in_redis, in_db = await count_check(self._pool, self._redis, keys)
            DRIFT.labels(board).set(in_db - in_redis)
            previous = self._previous.get(keys)
            self._previous[keys] = in_db
            why = count_drift(in_redis, in_db, previous)
            if not why:
                wrong = await sample_check(self._pool, self._redis, keys)
                if wrong:
                    why = f"{wrong} of the top users differ at the same version"
            if not why:
                why = await self._repair_behind(keys)
            if not why:
                continue
            log.warning(
                "ranking drift; rebuilding",
                extra={"board": board, "in_db": in_db, "in_redis": in_redis, "why": why},
            )
            REPAIRS.labels(board).inc()
            self._previous.pop(keys, None)
            await rebuild_when_free(self._pool, self._redis, self._scripts, keys)
            repaired.append(board)
        return repaired

    async def _repair_behind(self, keys: BoardKeys) -> str:
        """Repair the users of the current window whose Redis version is behind PostgreSQL's;
        "" when done, or why a rebuild is needed instead."""
        board = keys.board
        until = await database_clock(self._pool, self._grace.total_seconds())
        since = self._since.get(keys)
        if since is None:
            since = until - timedelta(seconds=self._check_seconds) - self._grace
        found = await version_check(self._pool, self._redis, keys, since, until)
        if found.behind:
            BEHIND.labels(board).inc(len(found.behind))
            log.warning(
                "users behind PostgreSQL beyond the grace window; repairing them",
                extra={"board": board, "users": len(found.behind), "checked": found.checked},
            )
            try:
                await apply_states(self._scripts, keys, found.behind, cause="check")
            except ResponseError as exc:
                return f"a user behind PostgreSQL cannot be repaired in place: {exc}"
        self._since[keys] = until - self._grace
        return ""
