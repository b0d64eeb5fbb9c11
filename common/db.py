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
        },
        open=False,
        name=name,
    )
    await pool.open(wait=True, timeout=30)
    return pool
