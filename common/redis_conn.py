"""Redis access: one async client (with its own connection pool) per process."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from common.config import RedisSettings
from common.telemetry import TimedRedis


def open_redis(settings: RedisSettings, *, name: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool makes a burst wait for a free connection (up to 5 s) instead of
    failing at once when every connection is busy."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=max_connections,
        timeout=5,
        client_name=name,
        health_check_interval=15,
        socket_keepalive=True,
        socket_connect_timeout=5,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=2),
    )
    # TimedRedis: command latency metrics for every call site.
    return TimedRedis.from_pool(pool)
