"""Latency of every Redis command and PostgreSQL statement a process makes, the state of its
database pool and its Redis server's keyspace hits and misses (read on each scrape), and the
loop that samples gauges (backlogs, lag) in the background.

Instrumented at the client, so every call site is covered without touching it: the Redis client
class times each command and pipeline, the psycopg cursor class each statement. Labels stay
bounded: the command name, the statement's first keyword.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
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
# The pool's state, read from psycopg_pool's get_stats() on each scrape. A pool whose requests
# keep waiting (or that has no idle connection for minutes) is exhausted: k8s/monitoring alerts.
DB_POOL_GAUGES = (
    (
        Gauge("scoreboard_db_pool_connections", "Connections the pool holds open.", ["pool"]),
        "pool_size",
    ),
    (
        Gauge("scoreboard_db_pool_available", "Idle connections ready for a request.", ["pool"]),
        "pool_available",
    ),
    (
        Gauge("scoreboard_db_pool_waiting", "Requests waiting for a connection.", ["pool"]),
        "requests_waiting",
    ),
    (
        Gauge("scoreboard_db_pool_max_connections", "The pool's size limit.", ["pool"]),
        "pool_max",
    ),
)
_STATEMENTS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "SET", "LISTEN", "CREATE", "ALTER", "DROP"}
)
# Blocking reads wait for data by design: their time is not latency.
_BLOCKING = frozenset({"XREAD", "XREADGROUP", "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})


# Labelled children by label value: labels() takes a lock and builds a key at every call, and
# these are observed on every command and statement (the label sets are small and bounded).
_REDIS_TIMERS: dict[str, Any] = {}
_DB_TIMERS: dict[str, Any] = {}


def _redis_timer(command: str) -> Any:
    timer = _REDIS_TIMERS.get(command)
    if timer is None:
        timer = _REDIS_TIMERS[command] = REDIS_LATENCY.labels(command)
    return timer


def _db_timer(statement: str) -> Any:
    timer = _DB_TIMERS.get(statement)
    if timer is None:
        timer = _DB_TIMERS[statement] = DB_LATENCY.labels(statement)
    return timer


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
            _redis_timer("PIPELINE").observe(time.perf_counter() - start)


class PoolStats(Protocol):
    def get_stats(self) -> dict[str, int]: ...


def watch_pool(pool: PoolStats, name: str) -> Callable[[], None]:
    """Export the pool's gauges, labelled `name`, read on each scrape (get_stats takes no lock
    and does no I/O); returns what removes them when the pool closes."""
    ref = weakref.ref(pool)

    def reading(key: str) -> Callable[[], float]:
        def read() -> float:
            live = ref()
            return float(live.get_stats().get(key, 0)) if live is not None else 0.0

        return read

    for gauge, key in DB_POOL_GAUGES:
        gauge.labels(name).set_function(reading(key))

    def unwatch() -> None:
        for gauge, _ in DB_POOL_GAUGES:
            with contextlib.suppress(KeyError):  # already removed by a namesake's close
                gauge.remove(name)

    return unwatch


class _Keyspace(Collector):
    """The Redis server's keyspace_hits and keyspace_misses (INFO stats), as counters: the hit
    rate is rate(hits) / (rate(hits) + rate(misses)). A scrape exports the last reading and asks
    a live client of the process for a new one on its own event loop (a scrape may come from the
    metrics server's thread), so each scrape shows the figures of about one interval before."""

    _HITS = "scoreboard_redis_keyspace_hits"
    _MISSES = "scoreboard_redis_keyspace_misses"

    def __init__(self) -> None:
        self._clients: list[tuple[weakref.ref[TimedRedis], asyncio.AbstractEventLoop]] = []
        self._reading: tuple[float, float] | None = None
        self._task: asyncio.Task[None] | None = None

    def watch(self, client: TimedRedis) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._clients.append((weakref.ref(client), loop))

    def unwatch(self, client: TimedRedis) -> None:
        self._clients = [(ref, loop) for ref, loop in self._clients if ref() not in (None, client)]

    def describe(self) -> Iterator[Metric]:
        yield from self._families(0.0, 0.0)

    def collect(self) -> Iterator[Metric]:
        self._request()
        if self._reading is not None:
            yield from self._families(*self._reading)

    def _families(self, hits: float, misses: float) -> Iterator[Metric]:
        yield CounterMetricFamily(self._HITS, "Redis lookups that found their key.", value=hits)
        yield CounterMetricFamily(self._MISSES, "Redis lookups of a missing key.", value=misses)

    def _request(self) -> None:
        for ref, loop in reversed(self._clients):
            client = ref()
            if client is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._start, client)
                except RuntimeError:  # the loop closed meanwhile
                    continue
                return

    def _start(self, client: TimedRedis) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._read(client))

    async def _read(self, client: TimedRedis) -> None:
        try:
            stats: dict[str, Any] = await client.info("stats")
        except Exception as exc:
            log.debug("redis keyspace sample failed: %s", exc)
            return
        self._reading = (
            float(stats.get("keyspace_hits", 0)),
            float(stats.get("keyspace_misses", 0)),
        )


KEYSPACE = _Keyspace()
REGISTRY.register(KEYSPACE)


class TimedRedis(aioredis.Redis):
    """redis.asyncio.Redis that times every command and pipeline, and serves the keyspace
    figures on scrape while it is open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        KEYSPACE.watch(self)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        KEYSPACE.unwatch(self)
        await super().aclose(close_connection_pool)

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
            _redis_timer(command).observe(time.perf_counter() - start)

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
            _db_timer(statement).observe(time.perf_counter() - start)


async def sample_every(seconds: float, sample: Callable[[], Awaitable[None]], *, name: str) -> None:
    """Run `sample` every `seconds` until cancelled; a failed sample is logged and retried."""
    while True:
        try:
            await sample()
        except Exception as exc:
            log.warning("metrics sample %s failed: %s", name, exc)
        await asyncio.sleep(seconds)
