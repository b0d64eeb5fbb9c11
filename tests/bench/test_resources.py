"""bench.resources finds the stack's server processes from the servers themselves."""

from __future__ import annotations

import psutil

from bench.resources import postgres_pids, redis_pid
from tests.support.servers import PostgresServer


async def test_the_postgres_server_is_found_every_time(pg_server: PostgresServer) -> None:
    # The backend that asks exits when its connection closes; the postmaster must be read
    # before that, or the CPU table silently loses its PostgreSQL row.
    found = [await postgres_pids(pg_server.url("postgres")) for _ in range(20)]
    assert all(len(pids) == 1 for pids in found)
    [postmaster] = {pids[0] for pids in found}
    assert psutil.Process(postmaster).children(), "the postmaster has its helper processes"


async def test_the_redis_server_is_found(redis_url: str) -> None:
    [pid] = await redis_pid(redis_url)
    assert psutil.pid_exists(pid)
