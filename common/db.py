"""PostgreSQL access: one async connection pool per process."""

from __future__ import annotations

from collections.abc import Callable

from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from common.config import DatabaseSettings
from common.telemetry import TimedCursor, watch_pool

Conn = AsyncConnection[tuple[object, ...]]
Pool = AsyncConnectionPool[Conn]


class _MeteredPool(AsyncConnectionPool[Conn]):
    """A pool whose size, idle and waiting counts are exported (labelled with its name) from
    open until close."""

    _unwatch: Callable[[], None] | None = None

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        await super().open(wait, timeout)
        if self._unwatch is None:
            self._unwatch = watch_pool(self, self.name)

    async def close(self, timeout: float = 5.0) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        await super().close(timeout)


async def open_pool(settings: DatabaseSettings, *, name: str) -> Pool:
    pool: Pool = _MeteredPool(
        settings.url,
        min_size=settings.min_connections,
        max_size=settings.max_connections,
        kwargs={
            "autocommit": False,
            "row_factory": tuple_row,
            "application_name": name,
            "cursor_factory": TimedCursor,  # statement latency metrics
            **_time_budgets(settings),
        },
        open=False,
        name=name,
        timeout=settings.pool_timeout_seconds,
    )
    await pool.open(wait=True, timeout=30)
    return pool


def _time_budgets(settings: DatabaseSettings) -> dict[str, int]:
    """libpq options bounding a connection's waits on TCP (ignored on a Unix socket): opening
    it, and noticing a peer that stopped answering (keepalives while idle or waiting for a
    reply; tcp_user_timeout while data sent is not acknowledged)."""
    dead = settings.dead_link_seconds
    return {
        "connect_timeout": settings.connect_timeout_seconds,
        "keepalives": 1,
        "keepalives_idle": max(1, dead // 2),
        "keepalives_interval": max(1, dead // 6),
        "keepalives_count": 3,
        "tcp_user_timeout": dead * 1000,
    }
