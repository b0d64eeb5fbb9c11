"""Fixtures: the run's PostgreSQL and Redis (external when SCOREBOARD_TEST_DATABASE_URL /
SCOREBOARD_TEST_REDIS_URL are set, else embedded), its own databases and key prefix (removed at
the end), signing keys, and whole in-process stacks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.support.forge import Signer
from tests.support.servers import (
    Databases,
    PostgresServer,
    delete_prefix,
    new_prefix,
    postgres_server,
    redis_server,
)
from tests.support.stack import KeyFiles, Stack, StackConfig, running_stack
from tests.support.stack_fixtures import StackFactory, stack_and_api

__all__ = ["StackFactory"]


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
def ours(key_files: KeyFiles) -> Signer:
    """The stack's real signing key, so a test can sign exactly what auth_service would."""
    kid = json.loads(key_files.jwks.read_text())["keys"][0]["kid"]
    return Signer.from_file(key_files.private, kid)


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


# One stack for tests that do not depend on the board's global state, and `api` on its edge.
shared_stack, api = stack_and_api(scope="session", stack="shared_stack")
