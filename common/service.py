"""What every gRPC service process does at start and stop, in one place: logging, the database
pool, Redis, the token verifier, the server, and the drain on SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol, TypeVar

import redis.asyncio as aioredis

from common.auth.tokens import TokenVerifier
from common.auth.verifier import open_verifier
from common.config import (
    ConfigError,
    DatabaseSettings,
    GrpcServerSettings,
    RedisSettings,
    VerifierSettings,
)
from common.db import Pool, open_pool
from common.grpc_server import RunningServer
from common.lifecycle import run_main
from common.logs import setup_logging
from common.redis_conn import open_redis
from common.redis_keys import Keys

S = TypeVar("S")


@dataclass(frozen=True)
class Deps:
    """The connections a service is built on (tests build them against their own servers)."""

    redis: aioredis.Redis
    verifier: TokenVerifier
    pool: Pool | None = None

    @property
    def db(self) -> Pool:
        if self.pool is None:
            raise RuntimeError("this service was built without a database pool")
        return self.pool


class ServiceSettings(Protocol):
    """What every gRPC service's settings hold."""

    @property
    def grpc(self) -> GrpcServerSettings: ...

    @property
    def redis(self) -> RedisSettings: ...

    @property
    def verifier(self) -> VerifierSettings: ...

    @property
    def log_level(self) -> str: ...


@dataclass(frozen=True)
class ProcessSettings:
    name: str
    log_level: str
    redis: RedisSettings
    verifier: VerifierSettings
    grace_seconds: float
    database: DatabaseSettings | None = None

    @classmethod
    def of(
        cls, name: str, settings: ServiceSettings, *, database: DatabaseSettings | None = None
    ) -> ProcessSettings:
        """The process settings of a service's settings (with a database pool when given)."""
        return cls(
            name=name,
            log_level=settings.log_level,
            redis=settings.redis,
            verifier=settings.verifier,
            grace_seconds=settings.grpc.grace_seconds,
            database=database,
        )


async def serve(
    process: ProcessSettings, build: Callable[[Deps], Awaitable[RunningServer]]
) -> None:
    setup_logging(process.name, process.log_level)
    async with AsyncExitStack() as stack:
        pool = None
        if process.database is not None:
            pool = await open_pool(process.database, name=process.name)
            stack.push_async_callback(pool.close)
        redis = open_redis(process.redis, name=process.name)
        stack.push_async_callback(redis.aclose)
        verifier = await open_verifier(process.verifier, redis, Keys(process.redis.key_prefix))
        stack.push_async_callback(verifier.aclose)
        running = await build(Deps(redis=redis, verifier=verifier, pool=pool))
        await running.serve_until_signal(process.grace_seconds)


def main(load: Callable[[], S], run: Callable[[S], Awaitable[None]]) -> int:
    """Entry point of `python -m <service>`: settings errors exit 2 with a clear message."""
    try:
        settings = load()
    except (ConfigError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    run_main(run(settings))  # type: ignore[arg-type]
    return 0
