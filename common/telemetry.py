"""Latency of every Redis command and PostgreSQL statement a process makes, and the loop that
samples gauges (backlogs, lag) in the background.

Instrumented at the client, so every call site is covered without touching it: the Redis client
class times each command and pipeline, the psycopg cursor class each statement. Labels stay
bounded: the command name, the statement's first keyword.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram
from psycopg import AsyncCursor
from redis.asyncio.client import Pipeline

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger("scoreboard.telemetry")

_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
REDIS_LATENCY = Histogram(
    "scoreboard_redis_command_seconds",
    "Redis round trips by command (a pipeline counts once, as PIPELINE).",
    ["command"],
    buckets=_BUCKETS,
)
REDIS_ERRORS = Counter(
    "scoreboard_redis_errors_total", "Redis commands that failed, by command.", ["command"]
)
DB_LATENCY = Histogram(
    "scoreboard_db_statement_seconds",
    "PostgreSQL statements by their first keyword (SELECT, INSERT, UPDATE, ...).",
    ["statement"],
    buckets=_BUCKETS,
)
DB_ERRORS = Counter(
    "scoreboard_db_errors_total", "PostgreSQL statements that failed, by keyword.", ["statement"]
)
_STATEMENTS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "SET", "LISTEN", "CREATE", "ALTER", "DROP"}
)
# Blocking reads wait for data by design: their time is not latency.
_BLOCKING = frozenset({"XREAD", "XREADGROUP", "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})


def _command(args: tuple[Any, ...]) -> str | None:
    name = args[0]
    command = (name.decode() if isinstance(name, bytes) else str(name)).upper()
    if command in _BLOCKING and any(str(a).upper() == "BLOCK" for a in args[1:]):
        return None
    return command.split(" ", 1)[0][:32]


class TimedPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        start = time.perf_counter()
        try:
            return await super().execute(raise_on_error)
        except BaseException:
            REDIS_ERRORS.labels("PIPELINE").inc()
            raise
        finally:
            REDIS_LATENCY.labels("PIPELINE").observe(time.perf_counter() - start)


class TimedRedis(aioredis.Redis):
    """redis.asyncio.Redis that times every command and pipeline."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        command = _command(args)
        if command is None:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except BaseException:
            REDIS_ERRORS.labels(command).inc()
            raise
        finally:
            REDIS_LATENCY.labels(command).observe(time.perf_counter() - start)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return TimedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def _statement(query: Any) -> str:
    text = query if isinstance(query, str) else getattr(query, "_obj", query)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if not isinstance(text, str):
        return "OTHER"
    word = text.lstrip(" \n(").split(None, 1)[0].upper() if text.strip() else ""
    return word if word in _STATEMENTS else "OTHER"


class TimedCursor(AsyncCursor[Any]):
    """The cursor every pooled connection makes: times each statement."""

    async def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        statement = _statement(query)
        start = time.perf_counter()
        try:
            return await super().execute(query, params, prepare=prepare, binary=binary)
        except BaseException:
            DB_ERRORS.labels(statement).inc()
            raise
        finally:
            DB_LATENCY.labels(statement).observe(time.perf_counter() - start)


async def sample_every(seconds: float, sample: Callable[[], Awaitable[None]], *, name: str) -> None:
    """Run `sample` every `seconds` until cancelled; a failed sample is logged and retried."""
    while True:
        try:
            await sample()
        except Exception as exc:
            log.warning("metrics sample %s failed: %s", name, exc)
        await asyncio.sleep(seconds)
