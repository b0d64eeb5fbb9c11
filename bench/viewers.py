"""Viewers held by one edge process, and commit-to-receipt propagation of top-10 changes.

Starts the whole stack (embedded PostgreSQL and Redis in a temporary folder unless URLs are
given), opens N WebSocket viewers from one or two load-generator processes (raw asyncio
protocols on uvloop: a few microseconds per message, so the generator is not what is measured),
drives top-10 changes through the real path (ScoreService.CompleteAction -> PostgreSQL -> outbox
-> Redis Stream -> leaderboard_service -> pub/sub -> stream_service -> edge -> sockets), and
reports p50/p95/p99 from commit to receipt and the edge's memory per idle connection.

Commit times come from a side channel with microsecond precision: this tool subscribes to the
board's pub/sub channel, whose messages carry each snapshot's sequence and the commit time (µs) of
its newest change; every viewer records (sequence, receipt time). Same machine, same clock.

    .venv/bin/python -m bench.viewers --viewers 1000 5000 10000 --changes 100 --rate 5

`run(...)` is the entry point for `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import multiprocessing
import os
import resource
import secrets
import signal
import statistics
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import grpc
import redis.asyncio as aioredis

from common.config import DEFAULT_BOARD
from common.grpc_client import call_metadata
from common.redis_keys import Keys
from common.redis_values import decode_top10
from ops.devstack import Stack, save_service_account, start_stack
from ops.embedded import free_port
from scoreboard.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

BENCH_ACTION = "bench-bump"
BENCH_CLIENT = "bench-driver"
_SEQ = b'"sequence":'


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit (20,000 on these machines)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- load generator (child process)


class _ViewerProtocol(asyncio.Protocol):
    """A minimal WebSocket client: handshake, unmasked server frames, pong replies."""

    __slots__ = ("buffer", "closed", "last_seq", "ready", "stats", "transport", "upgraded")

    def __init__(self, stats: _WorkerStats, ready: asyncio.Future[bool]) -> None:
        self.stats = stats
        self.ready = ready
        self.buffer = bytearray()
        self.upgraded = False
        self.closed = False
        self.last_seq = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_result(False)
                self.transport.close()  # type: ignore[union-attr]
                return
            del buffer[: end + 4]
            self.upgraded = True
            if not self.ready.done():
                self.ready.set_result(True)
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                offset = 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            if opcode == 0x1:
                self._message(payload, now)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                self.stats.server_closes += 1
                self.closed = True

    def _message(self, payload: bytes, now: float) -> None:
        at = payload.find(_SEQ)
        if at < 0:
            self.stats.other += 1
            return
        start = at + len(_SEQ)
        end = start
        while payload[end] in b"0123456789":
            end += 1
        seq = int(payload[start:end])
        stats = self.stats
        if seq <= self.last_seq:
            stats.backwards += 1
        self.last_seq = seq
        times = stats.receipts.get(seq)
        if times is None:
            times = stats.receipts[seq] = array("d")
        times.append(now)

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stats.lost += 1
        if not self.ready.done():
            self.ready.set_result(False)


@dataclass
class _WorkerStats:
    receipts: dict[int, array[float]] = field(default_factory=dict)
    backwards: int = 0
    other: int = 0
    lost: int = 0
    server_closes: int = 0


async def _open_viewer(
    host: str, port: int, path: str, stats: _WorkerStats
) -> _ViewerProtocol | None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[bool] = loop.create_future()
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    try:
        transport, protocol = await loop.create_connection(
            lambda: _ViewerProtocol(stats, ready), host, port
        )
    except OSError:
        return None
    transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    try:
        ok = await asyncio.wait_for(ready, 60)
    except TimeoutError:
        ok = False
    if not ok:
        transport.close()
        return None
    return protocol


async def _worker_main(url: str, count: int, pipe: Connection) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    stats = _WorkerStats()
    gate = asyncio.Semaphore(200)

    async def one() -> _ViewerProtocol | None:
        async with gate:
            return await _open_viewer(host, port, path, stats)

    viewers = [v for v in await asyncio.gather(*(one() for _ in range(count))) if v is not None]
    gc.collect()
    gc.freeze()  # the viewers live until the end: keep the collector off them
    pipe.send(("connected", len(viewers)))
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"
    for viewer in viewers:
        if viewer.transport is not None:
            viewer.transport.abort()
    pipe.send(
        (
            "done",
            {
                "receipts": {seq: times.tobytes() for seq, times in stats.receipts.items()},
                "backwards": stats.backwards,
                "lost_before_end": stats.lost - len(viewers),
                "server_closes": stats.server_closes,
                "still_open": sum(1 for v in viewers if not v.closed),
            },
        )
    )


def _worker(url: str, count: int, pipe: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_fd_limit()
    import uvloop

    uvloop.run(_worker_main(url, count, pipe))


# ---------------------------------------------------------------- driver (parent process)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _edge_arrivals(edge_url: str) -> tuple[float, float]:
    """(sum, count) of the edge's commit-to-arrival histogram."""
    import httpx

    async with httpx.AsyncClient() as client:
        text = (await client.get(edge_url + "/metrics", timeout=10)).text
    values = {}
    for line in text.splitlines():
        if line.startswith(
            ("scoreboard_propagation_seconds_sum", "scoreboard_propagation_seconds_count")
        ):
            name, value = line.split()
            values[name.rsplit("_", 1)[1]] = float(value)
    return values.get("sum", 0.0), values.get("count", 0.0)


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class _Driver:
    score: score_service_pb2_grpc.ScoreServiceAsyncStub
    token: str
    users: list[str]

    async def bump(self, index: int) -> None:
        await self.score.CompleteAction(
            score_service_pb2.CompleteActionRequest(
                action_id=BENCH_ACTION, user_id=self.users[index % len(self.users)]
            ),
            metadata=call_metadata(self.token),
            timeout=10,
        )


async def _prepare(
    stack: Stack, channel_auth: grpc.aio.Channel, score_ch: grpc.aio.Channel
) -> _Driver:
    secret = secrets.token_urlsafe(24)
    await asyncio.to_thread(
        save_service_account, stack.env, BENCH_CLIENT, secret, "scores:write admin"
    )
    auth = auth_service_pb2_grpc.AuthServiceStub(channel_auth)
    issued = await auth.IssueServiceToken(
        auth_service_pb2.IssueServiceTokenRequest(client_id=BENCH_CLIENT, client_secret=secret)
    )
    token = issued.access_token
    score = score_service_pb2_grpc.ScoreServiceStub(score_ch)
    with contextlib.suppress(grpc.aio.AioRpcError):  # already there from an earlier run
        await score.CreateAction(
            score_service_pb2.CreateActionRequest(
                action=score_service_pb2.Action(
                    action_id=BENCH_ACTION,
                    name="Bench bump",
                    description="One point, no limit: drives top-10 changes.",
                    base_points=1,
                    difficulty_multiplier=1.0,
                    daily_limit=100_000,
                    active=True,
                )
            ),
            metadata=call_metadata(token),
        )
    users = []
    for i in range(10):
        reply = await auth.Register(
            auth_service_pb2.RegisterRequest(
                username=f"bench{secrets.token_hex(4)}{i}",
                password=secrets.token_urlsafe(16),
                display_name=f"Bench player {i}",
            )
        )
        users.append(reply.user.user_id)
    return _Driver(score, token, users)


class Fleet:
    """`count` WebSocket viewers of one URL, spread over load-generator processes."""

    def __init__(self, ws_url: str, count: int, processes: int) -> None:
        self.ws_url = ws_url
        self.count = count
        self.processes = processes
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []

    async def open(self) -> int:
        """Start the processes and wait until every viewer is connected (or failed); returns
        how many are connected."""
        ctx = multiprocessing.get_context("spawn")
        share = [
            self.count // self.processes + (1 if i < self.count % self.processes else 0)
            for i in range(self.processes)
        ]
        for count in share:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(self.ws_url, count, child), daemon=True)
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)
        loop = asyncio.get_running_loop()
        connected = 0
        for pipe in self._pipes:
            kind, value = await loop.run_in_executor(None, pipe.recv)
            assert kind == "connected"
            connected += value
        return int(connected)

    async def close(self) -> list[dict[str, Any]]:
        """Close every viewer; returns each process's receipts and counts."""
        loop = asyncio.get_running_loop()
        for pipe in self._pipes:
            pipe.send("stop")
        results = [(await loop.run_in_executor(None, pipe.recv))[1] for pipe in self._pipes]
        for proc in self._procs:
            proc.join(10)
        return results


class CommitLog:
    """The side channel: the board's pub/sub messages carry each snapshot's sequence and the
    commit time (µs) of its newest change."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self._channel = Keys(prefix).board(DEFAULT_BOARD).channel
        self.commits: dict[int, int] = {}
        self.published: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)

        async def collect() -> None:
            try:
                async for message in pubsub.listen():
                    snapshot = decode_top10(message["data"])
                    self.commits[snapshot.seq] = snapshot.ts_us
                    self.published.append(time.time() - snapshot.ts_us / 1e6)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

        self._task = asyncio.create_task(collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()


def propagation(results: list[dict[str, Any]], log: CommitLog) -> dict[str, Any]:
    """Commit-to-receipt latencies of every snapshot published while `log` listened, and the
    share of viewers that received the last one."""
    commits = log.commits
    latencies: list[float] = []
    receipts = 0
    backwards = 0
    still_open = 0
    last_seq = max(commits) if commits else -1
    got_last = 0
    for result in results:
        backwards += result["backwards"]
        still_open += result["still_open"]
        for seq, raw in result["receipts"].items():
            times = array("d")
            times.frombytes(raw)
            receipts += len(times)
            if seq == last_seq:
                got_last += len(times)
            commit = commits.get(seq)
            if commit is None:
                continue  # the snapshot viewers got on connecting, before the run
            base = commit / 1e6
            latencies.extend((t - base) * 1000 for t in times)
    latencies.sort()
    published = log.published
    return {
        "snapshots_published": len(commits),
        "receipts": receipts,
        "viewers_with_final_snapshot": got_last,
        "backwards": backwards,
        "still_open_at_end": still_open,
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p95_ms": round(_percentile(latencies, 0.95), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else float("nan"),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else float("nan"),
        "publish_mean_ms": round(statistics.fmean(published) * 1000, 1) if published else None,
        "publish_max_ms": round(max(published) * 1000, 1) if published else None,
    }


async def _measure(
    stack: Stack,
    edge_pid: int,
    *,
    viewers: int,
    processes: int,
    changes: int,
    rate: float,
    settle_seconds: float,
) -> dict[str, Any]:
    env = stack.env
    auth_ch = grpc.aio.insecure_channel(env["SCOREBOARD_AUTH_ADDR"])
    score_ch = grpc.aio.insecure_channel(env["SCOREBOARD_SCORE_ADDR"])
    log = CommitLog(env["SCOREBOARD_REDIS_URL"], env.get("SCOREBOARD_KEY_PREFIX", "sb:"))
    try:
        driver = await _prepare(stack, auth_ch, score_ch)
        ws_url = stack.edge_url.replace("http://", "ws://") + "/ws"
        gc.collect()
        await asyncio.sleep(settle_seconds)
        rss_before = rss_bytes(edge_pid)
        fleet = Fleet(ws_url, viewers, processes)
        connected = await fleet.open()
        await asyncio.sleep(settle_seconds)  # let the edge settle: idle connections only
        rss_idle = rss_bytes(edge_pid)
        cpu_before = _cpu_seconds(edge_pid)
        upstream_before = await _edge_arrivals(stack.edge_url)
        await log.start()
        started = time.monotonic()
        for i in range(changes):
            target = started + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await driver.bump(i)
        await asyncio.sleep(2.0)  # the last change reaches everyone
        await log.stop()
        cpu_after = _cpu_seconds(edge_pid)
        upstream_after = await _edge_arrivals(stack.edge_url)
        rss_end = rss_bytes(edge_pid)
        results = await fleet.close()
    finally:
        await auth_ch.close()
        await score_ch.close()

    return {
        "viewers": viewers,
        "connected": connected,
        "processes": processes,
        "changes_driven": changes,
        "rate_per_second": rate,
        **propagation(results, log),
        "edge_rss_before_mb": round(rss_before / 2**20, 1),
        "edge_rss_idle_mb": round(rss_idle / 2**20, 1),
        "edge_rss_end_mb": round(rss_end / 2**20, 1),
        "edge_kb_per_idle_connection": round((rss_idle - rss_before) / max(1, connected) / 1024, 2),
        "edge_cpu_seconds_during_changes": round(cpu_after - cpu_before, 2),
        # Commit -> arrival at the edge (before the fan-out), from the edge's own histogram.
        "upstream_mean_ms": round(
            (upstream_after[0] - upstream_before[0])
            / max(1, upstream_after[1] - upstream_before[1])
            * 1000,
            1,
        ),
    }


def _stack_env(database_url: str | None, redis_url: str | None, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("SCOREBOARD_"):
            del env[name]
    env.update(
        {
            "SCOREBOARD_DATA_DIR": str(data_dir),
            "SCOREBOARD_WS_ANONYMOUS": "true",
            "SCOREBOARD_WS_MAX_CONNECTIONS": "20000",
            "SCOREBOARD_LOG_LEVEL": "WARNING",
            "SCOREBOARD_EDGE_PORT": str(free_port()),
            **{
                f"SCOREBOARD_{n}_PORT": str(free_port())
                for n in ("AUTH", "SCORE", "LEADERBOARD", "STREAM")
            },
        }
    )
    if database_url:
        env["SCOREBOARD_DATABASE_URL"] = database_url
    if redis_url:
        env["SCOREBOARD_REDIS_URL"] = redis_url
        env["SCOREBOARD_KEY_PREFIX"] = f"bench-{secrets.token_hex(3)}:"
    return env


async def run(
    viewers: tuple[int, ...] = (1000, 5000),
    *,
    changes: int = 100,
    rate: float = 5.0,
    processes: int | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    settle_seconds: float = 2.0,
) -> dict[str, Any]:
    """Measure each viewer count on a fresh stack; returns {"runs": [...]} (one dict per count).

    database_url must name a database this run may create and own (default: embedded PostgreSQL
    in a temporary folder); redis_url a Redis where a fresh key prefix is used (default:
    embedded)."""
    raise_fd_limit()
    runs = []
    for count in viewers:
        with tempfile.TemporaryDirectory(prefix="bench-viewers-") as tmp:
            env = _stack_env(database_url, redis_url, Path(tmp))
            stack = await asyncio.to_thread(start_stack, env, quiet=True)
            try:
                edge_pid = next(p.pid for name, p in stack.children if name == "edge")
                runs.append(
                    await _measure(
                        stack,
                        edge_pid,
                        viewers=count,
                        processes=processes or (1 if count <= 5000 else 2),
                        changes=changes,
                        rate=rate,
                        settle_seconds=settle_seconds,
                    )
                )
            finally:
                await asyncio.to_thread(stack.stop)
    return {"runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.viewers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--viewers", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="top-10 changes per second")
    parser.add_argument("--processes", type=int, default=None, help="load-generator processes")
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(
            tuple(args.viewers),
            changes=args.changes,
            rate=args.rate,
            processes=args.processes,
            database_url=args.database_url,
            redis_url=args.redis_url,
        )
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
