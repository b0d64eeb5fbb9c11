"""The PostgreSQL and Redis a test run talks to: the ones named by SCOREBOARD_TEST_DATABASE_URL
and SCOREBOARD_TEST_REDIS_URL, else embedded servers started for the run. Each run creates its
own databases and key prefix and removes them afterwards; it never touches anything else."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
import redis.asyncio as aioredis
from psycopg import sql

from ops.embedded import EmbeddedPostgres
from ops.migrate import migrate
from tests.support.redis_process import redis_process


@dataclass(frozen=True)
class PostgresServer:
    """An admin URL (any database) on a server where the run may create databases."""

    admin_url: str

    def url(self, database: str) -> str:
        return psycopg.conninfo.make_conninfo(self.admin_url, dbname=database)

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as conn:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            await conn.execute(query)
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    given = os.environ.get("SCOREBOARD_TEST_DATABASE_URL")
    if given:
        yield PostgresServer(given)
        return
    with tempfile.TemporaryDirectory(prefix="sbtest-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data")
        try:
            yield PostgresServer(server.url("postgres"))
        finally:
            server.stop()


@contextmanager
def redis_server() -> Iterator[str]:
    given = os.environ.get("SCOREBOARD_TEST_REDIS_URL")
    if given:
        yield given
        return
    with redis_process() as server:
        yield server.url


class Databases:
    """Databases of this run: one migrated template, cloned per stack in a fraction of a second."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.run_id = secrets.token_hex(4)
        self.template = f"sbtest_{self.run_id}_template"
        self._created: list[str] = []

    async def prepare(self) -> None:
        url = await self.server.create_database(self.template)
        self._created.append(self.template)
        await migrate(url)

    async def new(self) -> str:
        name = f"sbtest_{self.run_id}_{secrets.token_hex(3)}"
        # CREATE DATABASE ... TEMPLATE needs the template to have no other connections.
        url = await self.server.create_database(name, template=self.template)
        self._created.append(name)
        return url

    async def empty(self) -> str:
        """A database of this run with no schema at all (migration tests)."""
        name = f"sbtest_{self.run_id}_{secrets.token_hex(3)}"
        url = await self.server.create_database(name)
        self._created.append(name)
        return url

    async def drop_all(self) -> None:
        for name in reversed(self._created):
            await self.server.drop_database(name)
        self._created.clear()


async def delete_prefix(redis_url: str, prefix: str) -> None:
    """Remove every key this run created (and only those)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def new_prefix() -> str:
    return f"sbtest-{secrets.token_hex(4)}:"


T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Poll an async predicate until it returns something truthy; fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
