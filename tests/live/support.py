"""Helpers of the live-path tests: publishing top-10 snapshots the way leaderboard_service does,
raw WebSocket clients that misbehave on purpose, and access to the edge's state."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import orjson
import redis.asyncio as aioredis
from starlette.applications import Starlette

from auth_service.config import PasswordSettings
from auth_service.issuer import TokenIssuer
from auth_service.passwords import Passwords
from auth_service.store import AuthStore
from common.grpc_client import call_metadata
from edge.state import EdgeState
from ops.embedded import free_port, redis_server_binary
from scoreboard.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc
from scoreboard.stream.v1 import stream_service_pb2, stream_service_pb2_grpc
from tests.support.clients import service_token
from tests.support.servers import wait_for
from tests.support.stack import Stack

# What leaderboard_service's Lua does when the top 10 changed: next sequence, store, publish.
_PUBLISH = """
local seq
if redis.call('HEXISTS', KEYS[2], 'seq') == 1 then
  seq = string.format('%d', redis.call('HINCRBY', KEYS[2], 'seq', 1))
else
  seq = ARGV[2]
  redis.call('HSET', KEYS[2], 'seq', seq)
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'ts', ARGV[2])
if ARGV[4] == '1' then
  redis.call('PUBLISH', ARGV[3],
    '{"seq":' .. seq .. ',"ts":' .. ARGV[2] .. ',"entries":' .. ARGV[1] .. '}')
end
return seq
"""


def entries(*scores: int, name_size: int = 8) -> list[list[Any]]:
    """A top 10 of made-up users with these scores (descending order is the caller's)."""
    return [
        [rank, f"00000000-0000-4000-8000-{rank:012d}", f"p{rank}".ljust(name_size, "x"), score]
        for rank, score in enumerate(scores, start=1)
    ]


async def publish(
    redis: aioredis.Redis, stack: Stack, rows: list[list[Any]], *, announce: bool = True
) -> int:
    """Store and publish a top 10 exactly as leaderboard_service does (a wiped counter restarts
    at the current time in µs); returns its sequence. announce=False stores it without the PUBLISH,
    like a change published while a subscriber was disconnected."""
    board = stack.keys.board("default")
    seq = await redis.eval(
        _PUBLISH,
        2,
        board.top,
        board.meta,
        orjson.dumps(rows),
        str(int(time.time() * 1_000_000)),
        board.channel,
        "1" if announce else "0",
    )
    return int(seq)


async def settled(stack: Stack) -> None:
    """Wait until leaderboard_service has built the ranking at start (and published its first
    top 10), so the snapshots a test publishes itself are not raced by that rebuild."""
    board = stack.keys.board("default")

    async def ready() -> bool:
        return bool(await stack.redis.exists(board.ready)) and bool(
            await stack.redis.hexists(board.meta, "seq")
        )

    await wait_for(ready, timeout=30)


def edge_state(stack: Stack) -> EdgeState:
    assert stack.edge_server is not None
    app = stack.edge_server.config.app
    assert isinstance(app, Starlette)
    state: EdgeState = app.state.edge
    return state


def tokens(stack: Stack) -> TokenIssuer:
    """Mints tokens with the stack's signing key (for expired or odd tokens)."""
    return TokenIssuer(stack.config.keys.private, issuer="scoreboard", audience="scoreboard")


async def game_token(stack: Stack) -> str:
    return await service_token(stack.address("auth"), "game-server", stack.game_secret)


async def admin_token(stack: Stack) -> str:
    return await service_token(stack.address("auth"), "admin-tool", stack.admin_secret)


async def service_account(stack: Stack, client_id: str, scopes: tuple[str, ...]) -> str:
    """Create a service account with these scopes; returns a token of it."""
    secret = secrets.token_urlsafe(24)
    await AuthStore(stack.pool).save_service_account(
        client_id, await Passwords(PasswordSettings()).hash(secret), scopes
    )
    return await service_token(stack.address("auth"), client_id, secret)


async def register(stack: Stack, name: str | None = None) -> tuple[str, str]:
    """A new user over gRPC: (user id, access token)."""
    async with grpc.aio.insecure_channel(stack.address("auth")) as channel:
        reply = await auth_service_pb2_grpc.AuthServiceStub(channel).Register(
            auth_service_pb2.RegisterRequest(
                username=name or f"u{secrets.token_hex(5)}",
                password="correct horse battery",
                display_name=name or "",
            )
        )
    return reply.user.user_id, reply.tokens.access_token


async def create_bump_action(stack: Stack, action_id: str = "live-bump") -> str:
    """A one-point action without daily limit or cooldown, to drive top-10 changes."""
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        await score_service_pb2_grpc.ScoreServiceStub(channel).CreateAction(
            score_service_pb2.CreateActionRequest(
                action=score_service_pb2.Action(
                    action_id=action_id,
                    name="Bump",
                    description="one point",
                    base_points=1,
                    difficulty_multiplier=1.0,
                    daily_limit=100_000,
                    active=True,
                )
            ),
            metadata=call_metadata(await admin_token(stack)),
        )
    return action_id


async def complete(stack: Stack, token: str, user_id: str, action_id: str) -> None:
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        await score_service_pb2_grpc.ScoreServiceStub(channel).CompleteAction(
            score_service_pb2.CompleteActionRequest(action_id=action_id, user_id=user_id),
            metadata=call_metadata(token),
        )


class Watcher:
    """A WatchTop10 gRPC stream that records (or, paused, does not read) its snapshots."""

    def __init__(self, address: str, token: str, *, reading: bool = True) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        stub = stream_service_pb2_grpc.StreamServiceStub(self.channel)
        self.call = stub.WatchTop10(
            stream_service_pb2.WatchTop10Request(), metadata=call_metadata(token)
        )
        self.sequences: list[int] = []
        self.snapshots: list[Any] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = asyncio.Event()
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read()) if reading else None

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                self.sequences.append(reply.snapshot.sequence)
                self.snapshots.append(reply.snapshot)
                self._new.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._new.set()

    def start_reading(self) -> None:
        assert self._task is None
        self._task = asyncio.create_task(self._read())

    async def wait_for(self, sequence: int, timeout: float = 15.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not self.sequences or self.sequences[-1] < sequence:
                    if self.ended.is_set():
                        raise AssertionError(f"stream ended: {self.error}")
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"no sequence >= {sequence}; got {self.sequences[-5:]}") from None

    async def close(self) -> None:
        self.call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        await self.channel.close()


class RawSocket:
    """A WebSocket client that speaks only as much of RFC 6455 as a test needs: it completes
    the handshake and then reads only when told (or never), and never answers pings unless
    asked to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, ws_url: str, *, receive_buffer: int | None = None) -> RawSocket:
        host, port_path = ws_url.removeprefix("ws://").split(":", 1)
        port, _, rest = port_path.partition("/")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        writer.write(
            (
                f"GET /{rest} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload)."""
        head = await self.reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def frames_until_closed(self) -> list[tuple[int, bytes]]:
        """Read everything until the server closes the connection (or aborts it)."""
        frames = []
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                frames.append(await self.frame())
        return frames

    def send(self, opcode: int, payload: bytes) -> None:
        mask = secrets.token_bytes(4)
        length = len(payload)
        if length < 126:
            header = bytes((0x80 | opcode, 0x80 | length))
        elif length < 1 << 16:
            header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    def close(self) -> None:
        self.writer.close()


class PrivateRedis:
    """A redis-server of the test's own that can be stopped and started again on its port.

    Spawned without a preexec_fn (unlike ops.embedded): forking a process whose gRPC threads
    are busy can crash the child before it execs, and with no preexec_fn Python spawns with
    vfork, which runs no fork handlers."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.folder), "--save", "", "--appendonly", "yes"),
                *("--logfile", str(self.folder / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # flushes the append-only file
            self.process.wait(10)


@asynccontextmanager
async def private_redis() -> AsyncIterator[PrivateRedis]:
    with tempfile.TemporaryDirectory(prefix="sbtest-live-redis-") as tmp:
        server = PrivateRedis(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    for opcode, payload in frames:
        if opcode == 0x8 and len(payload) >= 2:
            return int.from_bytes(payload[:2], "big")
    return None
