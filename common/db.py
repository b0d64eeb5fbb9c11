"""PostgreSQL access: one async connection pool per process."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from common.config import DatabaseSettings
from common.telemetry import TimedCursor

Conn = AsyncConnection[tuple[object, ...]]
Pool = AsyncConnectionPool[Conn]


async def open_pool(settings: DatabaseSettings, *, name: str) -> Pool:
    pool: Pool = AsyncConnectionPool(
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
