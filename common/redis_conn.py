"""Redis access: one async client (with its own connection pool) per process.

Every call has a time budget (DESIGN decision 13): a reply must come within
RedisSettings.timeout_seconds, a connection must open within connect_timeout_seconds, and a
burst waits at most pool_timeout_seconds for a free pooled connection. A paused or black-holed
Redis therefore fails a call (redis TimeoutError or ConnectionError, both RedisError) instead
of hanging it. A blocking read (XREAD/XREADGROUP ... BLOCK ms, BLPOP ...) gets its block time on
top of the budget, so a long block never looks like a dead server. Pub/sub reads set their own
timeout (stream_service.hub).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from common.config import RedisSettings
from common.telemetry import TimedRedis

# Commands whose last argument is a block time in seconds (0: forever).
_BLOCKING_LAST_ARG = frozenset(
    {"BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX", "BLMPOP", "BZMPOP"}
)
# A read that blocks forever still gets a budget: an hour, never "no limit".
_FOREVER_SECONDS = 3600.0


def block_seconds(args: tuple[Any, ...]) -> float:
    """How long the server may hold this command's reply by design (0.0 for most commands)."""
    if not args:
        return 0.0
    name = _text(args[0]).upper()
    if name in ("XREAD", "XREADGROUP"):
        for index in range(1, len(args) - 1):
            if _text(args[index]).upper() == "BLOCK":
                millis = _number(args[index + 1])
                return _FOREVER_SECONDS if millis == 0 else millis / 1000
        return 0.0
    if name in _BLOCKING_LAST_ARG and len(args) > 1:
        seconds = _number(args[-1]) if name not in ("BLMPOP", "BZMPOP") else _number(args[1])
        return _FOREVER_SECONDS if seconds == 0 else seconds
    return 0.0


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float:
    try:
        return max(0.0, float(_text(value)))
    except ValueError:
        return 0.0


class _BlockBudget:
    """A connection whose read budget for a blocking command is its block time plus the
    configured socket timeout (redis-py applies socket_timeout to every read as it is)."""

    socket_timeout: float | None
    _block_budget: float = 0.0

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        await super().send_command(*args, **kwargs)  # type: ignore[misc]
        self._block_budget = block_seconds(args)

    async def read_response(
        self, disable_decoding: bool = False, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        extra, self._block_budget = self._block_budget, 0.0
        base = self.socket_timeout
        if timeout is not None or not extra or base is None:
            return await super().read_response(  # type: ignore[misc]
                disable_decoding, timeout, **kwargs
            )
        self.socket_timeout = base + extra
        try:
            return await super().read_response(  # type: ignore[misc]
                disable_decoding, timeout, **kwargs
            )
        finally:
            self.socket_timeout = base


class BudgetedConnection(_BlockBudget, Connection):
    pass


class BudgetedSSLConnection(_BlockBudget, SSLConnection):
    pass


class BudgetedUnixConnection(_BlockBudget, UnixDomainSocketConnection):
    pass


def _connection_class(url: str) -> type[AbstractConnection]:
    scheme = urlsplit(url).scheme
    if scheme == "rediss":
        return BudgetedSSLConnection
    if scheme == "unix":
        return BudgetedUnixConnection
    return BudgetedConnection


def open_redis(settings: RedisSettings, *, name: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool makes a burst wait for a free connection (up to
    settings.pool_timeout_seconds) instead of failing at once when every connection is busy.

    A refused or reset connection (Redis restarting) is retried twice with a short backoff; a
    timeout is not: a server that did not answer within the budget would not answer a retry
    sooner, and the caller's own deadline is what matters."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        connection_class=_connection_class(settings.url),
        max_connections=max_connections,
        timeout=settings.pool_timeout_seconds,
        client_name=name,
        health_check_interval=15,
        socket_keepalive=True,
        socket_timeout=settings.timeout_seconds,
        socket_connect_timeout=settings.connect_timeout_seconds,
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=1.0),
            retries=2,
            supported_errors=(RedisConnectionError,),
        ),
    )
    # TimedRedis: command latency metrics for every call site.
    return TimedRedis.from_pool(pool)
