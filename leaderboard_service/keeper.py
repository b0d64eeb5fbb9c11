"""Keeps each board's ranking complete: rebuilds it at start when it is not ready, whenever the
consumer reports it missing (Redis wiped), and when the periodic check finds certain drift.

The periodic check is cheap enough for a million users and tolerant of events in flight:
- Redis is counted before PostgreSQL, so more ranked users in Redis than in PostgreSQL is drift;
- fewer ranked users in Redis than PostgreSQL had one whole check earlier is drift (users only
  join the ranking; a healthy consumer catches up within seconds);
- a user among PostgreSQL's top 100 with the same version in Redis but another state is drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from common.db import Pool
from common.lifecycle import raise_if_cancelling
from common.redis_keys import Keys
from leaderboard_service.rebuild import rebuild_when_free
from leaderboard_service.reconcile import count_check, sample_check
from leaderboard_service.scripts import Scripts

log = logging.getLogger("scoreboard.keeper")
DRIFT = Gauge(
    "scoreboard_ranking_drift_users", "Ranked users in PostgreSQL minus in Redis.", ["board"]
)
REPAIRS = Counter(
    "scoreboard_ranking_drift_repairs_total", "Rebuilds started by the periodic check.", ["board"]
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
        pool: Pool,
        redis: aioredis.Redis,
        scripts: Scripts,
        keys: Keys,
        boards: tuple[str, ...],
        *,
        check_seconds: float,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._scripts = scripts
        self._keys = keys
        self._boards = boards
        self._check_seconds = check_seconds
        self._wake = asyncio.Event()
        # PostgreSQL's count at the previous check, per board.
        self._previous: dict[str, int] = {}

    def request_check(self) -> None:
        self._wake.set()

    async def ensure_ready(self) -> None:
        for board in self._boards:
            keys = self._keys.board(board)
            if not await self._redis.exists(keys.ready):
                log.info("ranking not ready; rebuilding from PostgreSQL", extra={"board": board})
                self._previous.pop(board, None)
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
            keys = self._keys.board(board)
            if not await self._redis.exists(keys.ready):
                continue
            in_redis, in_db = await count_check(self._pool, self._redis, keys)
            DRIFT.labels(board).set(in_db - in_redis)
            previous = self._previous.get(board)
            self._previous[board] = in_db
            why = count_drift(in_redis, in_db, previous)
            if not why:
                wrong = await sample_check(self._pool, self._redis, keys)
                if wrong:
                    why = f"{wrong} of the top users differ at the same version"
            if not why:
                continue
            log.warning(
                "ranking drift; rebuilding",
                extra={"board": board, "in_db": in_db, "in_redis": in_redis, "why": why},
            )
            REPAIRS.labels(board).inc()
            self._previous.pop(board, None)
            await rebuild_when_free(self._pool, self._redis, self._scripts, keys)
            repaired.append(board)
        return repaired
