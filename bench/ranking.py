"""Ranking benchmark at a million users.

    python -m bench.ranking [--users 1000000] [--seconds 5] [--events 50000]

Seeds a board in PostgreSQL (COPY, in a database of its own), starts leaderboard_service as a
separate process (which rebuilds the Redis ranking from PostgreSQL at start, through the same
pipeline as RebuildRanking), then measures for `seconds` each, with `concurrency` requests in
flight: rank lookups and top-10 reads through the scripts (one EVALSHA each) and through
LeaderboardService over gRPC, the PostgreSQL fallback, and the events one EventConsumer applies
per second to the full board. Everything it created (database, keys under its own prefix,
servers it started) is removed at the end.

PostgreSQL and Redis: --database-url (an admin URL; default SCOREBOARD_BENCH_DATABASE_URL, then
SCOREBOARD_TEST_DATABASE_URL, else an embedded server) and --redis-url (default
SCOREBOARD_BENCH_REDIS_URL, else a private redis-server, so the load never lands on a shared
one). Another module (make bench) can call `await run(...)`, which returns the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import platform
import random
import secrets
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import orjson
import psycopg
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg import sql

from auth_service.issuer import TokenIssuer
from bench.seeding import BASE_US, BoardSpec, seed_postgres
from common.auth.signing_keys import ensure_keys
from common.config import DatabaseSettings
from common.db import open_pool
from common.grpc_client import call_metadata
from common.redis_keys import BoardKeys, Keys
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.consumer import EventConsumer
from leaderboard_service.pg_ranking import PgRanking
from leaderboard_service.scripts import Scripts
from ops.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from ops.migrate import migrate
from scoreboard.events.v1 import events_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc

BOARD = "default"
Call = Callable[[], Awaitable[object]]


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


async def _measure(call: Call, seconds: float, concurrency: int) -> dict[str, float]:
    """Calls per second with `concurrency` in flight, and latency percentiles in ms."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "per_second": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "calls": float(len(latencies)),
    }


@asynccontextmanager
async def _servers(
    database_url: str | None, redis_url: str | None
) -> AsyncIterator[tuple[str, str]]:
    """(admin PostgreSQL URL, Redis URL); embedded ones are started and stopped here."""
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp:
        pg: EmbeddedPostgres | None = None
        redis_server: EmbeddedRedis | None = None
        try:
            if database_url is None:
                pg = EmbeddedPostgres(Path(tmp) / "pg")
                database_url = pg.url("postgres")
            if redis_url is None:
                redis_server = EmbeddedRedis.start(Path(tmp) / "redis", persistent=False)
                redis_url = redis_server.url
            yield database_url, redis_url
        finally:
            if redis_server is not None:
                redis_server.stop()
            if pg is not None:
                pg.stop()


@asynccontextmanager
async def _database(admin_url: str) -> AsyncIterator[str]:
    name = f"bench_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
        await migrate(url)
        yield url
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def _delete_prefix(redis: aioredis.Redis, prefix: str) -> None:
    batch: list[Any] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


@asynccontextmanager
async def _service(
    database_url: str, redis_url: str, prefix: str, jwks: Path, log: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """leaderboard_service as its own process (queries only: no consumer)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        SCOREBOARD_DATABASE_URL=database_url,
        SCOREBOARD_REDIS_URL=redis_url,
        SCOREBOARD_KEY_PREFIX=prefix,
        SCOREBOARD_JWKS_FILE=str(jwks),
        SCOREBOARD_DENYLIST="false",
        SCOREBOARD_GRPC_PORT=str(port),
        SCOREBOARD_CONSUMER_ENABLED="false",
        SCOREBOARD_RANKING_CHECK_SECONDS="0",
        SCOREBOARD_LOG_LEVEL="INFO",
    )
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "leaderboard_service", env=env, stdout=sink, stderr=sink
        )
    try:
        yield f"127.0.0.1:{port}", process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def _memory(redis: aioredis.Redis, key: str) -> int:
    """MEMORY USAGE of every element (SAMPLES 0: exact, O(N))."""
    reply: Any = await redis.execute_command(  # type: ignore[no-untyped-call]
        "MEMORY", "USAGE", key, "SAMPLES", "0"
    )
    return int(reply)


async def _redis_benchmark(
    redis_url: str, command: list[str], requests: int, clients: int
) -> dict[str, float] | None:
    """The script as redis-benchmark (a C client) drives it: Redis's own capacity, without
    Python in the way. None when redis-benchmark is not installed."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    address = urlsplit(redis_url)
    process = await asyncio.create_subprocess_exec(
        binary,
        "-h",
        address.hostname or "127.0.0.1",
        "-p",
        str(address.port or 6379),
        "-c",
        str(clients),
        "-n",
        str(requests),
        "--csv",
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    rows = list(csv.reader(out.decode().splitlines()))
    if process.returncode != 0 or len(rows) < 2:
        return None
    row = dict(zip(rows[0], rows[-1], strict=False))
    return {
        "per_second": float(row["rps"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
        "calls": float(requests),
    }


def _rebuild_seconds(log: Path) -> float | None:
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = orjson.loads(line)
            if entry.get("msg") == "ranking rebuilt":
                return float(entry["seconds"])
    return None


async def _wait_ready(redis: aioredis.Redis, keys: BoardKeys, process: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not await redis.exists(keys.ready):
        if process.returncode is not None:
            raise RuntimeError("leaderboard_service exited; see its log")
        if time.monotonic() > deadline:
            raise RuntimeError("the ranking was not ready in time")
        await asyncio.sleep(0.2)


async def _wait_port(address: str, limit: float = 30) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + limit
    while True:
        with contextlib.suppress(OSError):
            socket.create_connection((host, int(port)), timeout=0.2).close()
            return
        if time.monotonic() > deadline:
            raise RuntimeError("leaderboard_service did not listen in time")
        await asyncio.sleep(0.1)


def _events(spec: BoardSpec, count: int, rng: random.Random) -> list[bytes]:
    """ScoreUpdated events for `count` distinct users (version 2, a new total)."""
    payloads: list[bytes] = []
    now = Timestamp()
    for index in rng.sample(range(spec.users), min(count, spec.users)):
        user = spec.user(index)
        now.FromMicroseconds(BASE_US + 3_000_000_000_000 + index)
        payloads.append(
            events_pb2.ScoreUpdated(
                event_id=f"bench:{index}",
                board_id=BOARD,
                user_id=user.user_id,
                display_name=user.display_name,
                total=user.total + rng.randrange(10, 5000, 10),
                increment=10,
                version=2,
                commit_time=now,
                reached_time=now,
                excluded=user.banned,
            ).SerializeToString()
        )
    return payloads


async def _consumer_rate(
    redis: aioredis.Redis, keys: BoardKeys, payloads: list[bytes], limit: float
) -> dict[str, float]:
    """Events per second one EventConsumer applies to the full board (stream filled first)."""
    group = "bench"
    await redis.unlink(keys.events)
    for start in range(0, len(payloads), 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for payload in payloads[start : start + 5000]:
                pipe.xadd(keys.events, {"e": payload})
            await pipe.execute()
    consumer = EventConsumer(
        redis,
        Scripts(redis),
        keys,
        ConsumerSettings(group=group, name="bench-consumer", batch_size=500, block_ms=100),
        on_not_ready=lambda: None,
    )
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    try:
        while True:
            groups: Any = await redis.xinfo_groups(keys.events)
            info = next((g for g in groups if g["name"] in (group, group.encode())), None)
            if info is not None and info["pending"] == 0 and info["entries-read"] == len(payloads):
                break
            if time.perf_counter() - started > limit:
                raise RuntimeError("the consumer did not drain the stream in time")
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elapsed = time.perf_counter() - started
    return {"per_second": len(payloads) / elapsed, "seconds": elapsed, "events": len(payloads)}


async def run(
    *,
    users: int = 1_000_000,
    seconds: float = 5.0,
    events: int = 50_000,
    concurrency: int = 16,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """Seed, measure, clean up; return the figures (rates per second, latencies in ms)."""
    database_url = (
        database_url
        or os.environ.get("SCOREBOARD_BENCH_DATABASE_URL")
        or (os.environ.get("SCOREBOARD_TEST_DATABASE_URL"))
    )
    redis_url = redis_url or os.environ.get("SCOREBOARD_BENCH_REDIS_URL")
    spec = BoardSpec(users)
    rng = random.Random(7)
    figures: dict[str, Any] = {"users": users, "seconds": seconds, "concurrency": concurrency}
    prefix = f"bench-{secrets.token_hex(4)}:"
    keys = Keys(prefix).board(BOARD)
    async with AsyncExitStack() as stack:
        admin_url, redis_url = await stack.enter_async_context(_servers(database_url, redis_url))
        url = await stack.enter_async_context(_database(admin_url))
        assert redis_url is not None
        redis = aioredis.Redis.from_url(redis_url, max_connections=64)
        stack.push_async_callback(redis.aclose)
        stack.push_async_callback(_delete_prefix, redis, prefix)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        figures["redis_version"] = (await redis.info("server"))["redis_version"]

        started = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await seed_postgres(conn, spec, BOARD)
            cur = await conn.execute("SHOW server_version")
            version = await cur.fetchone()
            figures["postgres_version"] = str(version[0]) if version else "?"
        figures["seed_seconds"] = time.perf_counter() - started

        private, jwks = tmp / "signing.pem", tmp / "jwks.json"
        ensure_keys(private, jwks)
        token = (
            TokenIssuer(private, issuer="scoreboard", audience="scoreboard")
            .access_token(
                subject="svc:bench", role="service", scopes=("leaderboard:read",), lifetime=3600
            )
            .token
        )
        log = tmp / "leaderboard_service.log"
        address, process = await stack.enter_async_context(
            _service(url, redis_url, prefix, jwks, log)
        )
        started = time.perf_counter()
        await _wait_ready(redis, keys, process, limit=900)
        figures["rebuild_seconds"] = _rebuild_seconds(log) or time.perf_counter() - started
        figures["ranked_users"] = int(await redis.zcard(keys.ranking))
        figures["memory_ranking_bytes"] = await _memory(redis, keys.ranking)
        figures["memory_users_bytes"] = await _memory(redis, keys.users)
        await _wait_port(address)

        ranked_ids = [spec.user(i).user_id for i in rng.sample(range(users), 10_000)]
        scripts = Scripts(redis)

        def pick() -> str:
            return ranked_ids[rng.randrange(len(ranked_ids))]

        async def script_rank() -> object:
            return await scripts.user_rank(
                keys=[keys.ranking, keys.users, keys.ready], args=[pick(), 0]
            )

        async def script_top() -> object:
            return await scripts.top(
                keys=[keys.ranking, keys.users, keys.meta, keys.ready], args=[0, 10]
            )

        figures["script_rank"] = await _measure(script_rank, seconds, concurrency)
        figures["script_top10"] = await _measure(script_top, seconds, concurrency)
        sample = ranked_ids[0]  # one random user: a lookup costs O(log N) wherever it is
        requests = max(1000, int(seconds * 20_000))
        figures["server_rank"] = await _redis_benchmark(
            redis_url,
            [
                "EVALSHA",
                scripts.user_rank.sha,
                "3",
                keys.ranking,
                keys.users,
                keys.ready,
                sample,
                "0",
            ],
            requests,
            concurrency,
        )
        figures["server_top10"] = await _redis_benchmark(
            redis_url,
            [
                "EVALSHA",
                scripts.top.sha,
                "4",
                keys.ranking,
                keys.users,
                keys.meta,
                keys.ready,
                "0",
                "10",
            ],
            requests,
            concurrency,
        )

        channel = grpc.aio.insecure_channel(address)
        stack.push_async_callback(channel.close)
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        metadata = call_metadata(token)

        async def grpc_rank() -> object:
            return await stub.GetUserRank(
                pb.GetUserRankRequest(user_id=pick()), metadata=metadata, timeout=10
            )

        async def grpc_top() -> object:
            return await stub.ListEntries(
                pb.ListEntriesRequest(page_size=10), metadata=metadata, timeout=10
            )

        await grpc_top()  # connect before timing
        figures["grpc_rank"] = await _measure(grpc_rank, seconds, concurrency)
        figures["grpc_top10"] = await _measure(grpc_top, seconds, concurrency)

        pool = await open_pool(DatabaseSettings(url, max_connections=4), name="bench")
        stack.push_async_callback(pool.close)
        fallback = PgRanking(pool)

        async def pg_rank() -> object:
            return await fallback.user_rank(BOARD, pick(), 0)

        async def pg_top() -> object:
            return await fallback.top(BOARD, 0, 10)

        figures["fallback_rank"] = await _measure(pg_rank, seconds, 4)
        figures["fallback_top10"] = await _measure(pg_top, seconds, 4)

        payloads = _events(spec, events, rng)
        figures["consumer"] = await _consumer_rate(redis, keys, payloads, limit=600)
    return figures


def _rate(figure: dict[str, float] | None) -> str:
    if figure is None:
        return "n/a (no redis-benchmark)"
    return (
        f"{figure['per_second']:,.0f}/s (p50 {figure['p50_ms']:.2f} ms,"
        f" p99 {figure['p99_ms']:.2f} ms)"
    )


def table(figures: dict[str, Any], command: str) -> str:
    users = figures["users"]
    rows = [
        ("seed PostgreSQL (COPY + INSERT ... SELECT)", f"{figures['seed_seconds']:.1f} s"),
        (
            "rebuild Redis from PostgreSQL",
            f"{figures['rebuild_seconds']:.1f} s"
            f" ({users / figures['rebuild_seconds']:,.0f} users/s)",
        ),
        (
            "Redis memory: ranking ZSET + user states HASH",
            f"{figures['memory_ranking_bytes'] / 2**20:.0f} MiB + "
            f"{figures['memory_users_bytes'] / 2**20:.0f} MiB"
            f" ({(figures['memory_ranking_bytes'] + figures['memory_users_bytes']) / users:.0f}"
            " bytes/user)",
        ),
        ("rank lookups, user_rank script (redis-benchmark)", _rate(figures["server_rank"])),
        ("top-10 reads, top script (redis-benchmark)", _rate(figures["server_top10"])),
        ("rank lookups, user_rank script (redis-py)", _rate(figures["script_rank"])),
        ("top-10 reads, top script (redis-py)", _rate(figures["script_top10"])),
        ("rank lookups, gRPC GetUserRank", _rate(figures["grpc_rank"])),
        ("top-10 reads, gRPC ListEntries", _rate(figures["grpc_top10"])),
        ("rank lookups, PostgreSQL fallback (4 conns)", _rate(figures["fallback_rank"])),
        ("top-10 reads, PostgreSQL fallback (4 conns)", _rate(figures["fallback_top10"])),
        (
            "events applied by one consumer (batches of 500)",
            f"{figures['consumer']['per_second']:,.0f}/s ({figures['consumer']['events']:,}"
            f" events in {figures['consumer']['seconds']:.1f} s)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"ranking benchmark: {users:,} users ({figures['ranked_users']:,} ranked),"
        f" {os.cpu_count()} CPU cores, Redis {figures['redis_version']},"
        f" PostgreSQL {figures['postgres_version']}, Python {platform.python_version()};"
        f" {figures['concurrency']} requests in flight, {figures['seconds']:g} s per measure",
        f"command: {command}",
        "",
        f"| {'measure':<{width}} | result |",
        f"| {'-' * width} | ------ |",
    ]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _run_loop(coroutine: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    return uvloop.run(coroutine)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ranking", description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args(argv)
    figures = _run_loop(
        run(
            users=args.users,
            seconds=args.seconds,
            events=args.events,
            concurrency=args.concurrency,
            database_url=args.database_url,
            redis_url=args.redis_url,
        )
    )
    shown = ["<url>" if "://" in a else a for a in (argv if argv is not None else sys.argv[1:])]
    print(table(figures, shlex.join(["python", "-m", "bench.ranking", *shown])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
