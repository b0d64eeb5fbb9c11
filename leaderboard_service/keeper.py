"""Keeps each board's ranking complete: rebuilds it at start when it is not ready, whenever the
consumer reports it missing (Redis wiped), and when the periodic check finds drift twice in a
row (once could be events in flight)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from prometheus_client import Gauge

from common.db import Pool
from common.keys import Keys
from leaderboard_service.rebuild import rebuild_when_free
from leaderboard_service.reconcile import quick_check
from leaderboard_service.scripts import Scripts

log = logging.getLogger("scoreboard.keeper")
DRIFT = Gauge(
    "scoreboard_ranking_drift_users", "Ranked users in PostgreSQL minus in Redis.", ["board"]
)


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
        self._drifting: set[str] = set()

    def request_check(self) -> None:
        self._wake.set()

    async def ensure_ready(self) -> None:
        for board in self._boards:
            keys = self._keys.board(board)
            if not await self._redis.exists(keys.ready):
                log.info("ranking not ready; rebuilding from PostgreSQL", extra={"board": board})
                await rebuild_when_free(self._pool, self._redis, self._scripts, keys)

    async def run(self) -> None:
        interval = self._check_seconds if self._check_seconds > 0 else 3600.0
        while True:
            try:
                await self.ensure_ready()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                if self._wake.is_set():
                    self._wake.clear()
                elif self._check_seconds > 0:
                    await self._check_drift()
            except (OSError, aioredis.RedisError) as exc:
                log.warning("ranking keeper cannot reach Redis: %s", exc)
                await asyncio.sleep(1.0)

    async def _check_drift(self) -> None:
        for board in self._boards:
            keys = self._keys.board(board)
            in_db, in_redis = await quick_check(self._pool, self._redis, keys)
            DRIFT.labels(board).set(in_db - in_redis)
            if in_db == in_redis:
                self._drifting.discard(board)
                continue
            log.warning(
                "ranking drift", extra={"board": board, "in_db": in_db, "in_redis": in_redis}
            )
            if board in self._drifting:
                self._drifting.discard(board)
                await rebuild_when_free(self._pool, self._redis, self._scripts, keys)
            else:
                self._drifting.add(board)
