"""Fixtures: the run's PostgreSQL and Redis (external when SCOREBOARD_TEST_DATABASE_URL /
SCOREBOARD_TEST_REDIS_URL are set, else embedded), its own databases and key prefix (removed at
the end), signing keys, and whole in-process stacks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from tests.support.clients import Api
from tests.support.servers import (
    Databases,
    PostgresServer,
    delete_prefix,
    new_prefix,
    postgres_server,
    redis_server,
)
from tests.support.stack import KeyFiles, Stack, StackConfig, running_stack

StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
async def databases(pg_server: PostgresServer) -> AsyncIterator[Databases]:
    dbs = Databases(pg_server)
    await dbs.prepare()
    try:
        yield dbs
    finally:
        await dbs.drop_all()


@pytest.fixture(scope="session")
async def run_prefix(redis_url: str) -> AsyncIterator[str]:
    """The key prefix of this run; every stack's prefix starts with it."""
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        await delete_prefix(redis_url, prefix)


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return KeyFiles.create(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def stack_factory(
    databases: Databases, redis_url: str, run_prefix: str, key_files: KeyFiles
) -> StackFactory:
    """`async with stack_factory(**overrides) as stack`: a whole mesh with its own database and
    key prefix. Overrides: redis_url, keys, auth/score/leaderboard/stream/edge/websocket dicts."""

    counter = iter(range(1_000_000))

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Stack]:
        config = StackConfig(
            database_url=await databases.new(),
            redis_url=overrides.pop("redis_url", redis_url),
            prefix=f"{run_prefix}{next(counter)}:",
            keys=overrides.pop("keys", key_files),
            **overrides,
        )
        async with running_stack(config) as stack:
            yield stack

    return factory


@pytest.fixture(scope="session")
async def shared_stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    """One stack for tests that do not depend on the board's global state."""
    async with stack_factory() as stack:
        yield stack


@pytest.fixture
async def api(shared_stack: Stack) -> AsyncIterator[Api]:
    async with Api(shared_stack.edge_url) as client:
        yield client
