"""The whole mesh in the test process: the four gRPC servers on free ports and the edge on
uvicorn, each with its own connections, against the run's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette

import auth_service.config
import auth_service.server
import edge.config
import leaderboard_service.config
import leaderboard_service.server
import score_service.config
import score_service.server
import stream_service.config
import stream_service.server
from auth_service.passwords import Passwords
from auth_service.store import AuthStore
from common.auth.principal import ALL_SCOPES
from common.auth.signing_keys import ensure_keys
from common.auth.verifier import open_verifier
from common.config import (
    ClientCredentials,
    DatabaseSettings,
    Endpoints,
    GrpcServerSettings,
    RedisSettings,
    VerifierSettings,
)
from common.db import Pool, open_pool
from common.grpc_server import RunningServer
from common.redis_conn import open_redis
from common.redis_keys import Keys
from common.service import Deps
from edge.app import create_app
from edge.server import build_config
from edge.state import EdgeState

SERVICES = ("auth", "score", "leaderboard", "stream")


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    jwks: Path

    @classmethod
    def create(cls, folder: Path) -> KeyFiles:
        keys = cls(folder / "signing.pem", folder / "jwks.json")
        ensure_keys(keys.private, keys.jwks)
        return keys


@dataclass
class StackConfig:
    database_url: str
    redis_url: str
    prefix: str
    keys: KeyFiles
    # Overrides per service, applied with dataclasses.replace on its Settings.
    auth: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    leaderboard: dict[str, Any] = field(default_factory=dict)
    stream: dict[str, Any] = field(default_factory=dict)
    edge: dict[str, Any] = field(default_factory=dict)
    websocket: dict[str, Any] = field(default_factory=dict)
    with_edge: bool = True


@dataclass
class Service:
    running: RunningServer
    deps: Deps
    port: int


@dataclass
class Stack:
    config: StackConfig
    services: dict[str, Service]
    redis: aioredis.Redis
    pool: Pool
    admin_secret: str
    game_secret: str
    edge_secret: str
    edge_url: str = ""
    edge_server: uvicorn.Server | None = None
    edge_task: asyncio.Task[None] | None = None

    @property
    def keys(self) -> Keys:
        return Keys(self.config.prefix)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.services[name].port}"

    @property
    def ws_url(self) -> str:
        return self.edge_url.replace("http://", "ws://") + "/ws"

    async def stop_service(self, name: str, grace: float = 1.0) -> None:
        service = self.services.pop(name)
        await service.running.stop(grace)
        await _close_deps(service.deps)

    async def start_service(self, name: str) -> None:
        """Start (again) on the same port, as a restarted process would."""
        port = self._ports[name]
        self.services[name] = await _start_service(name, self.config, port)

    async def stop_edge(self) -> None:
        if self.edge_server is not None and self.edge_task is not None:
            self.edge_server.should_exit = True
            await self.edge_task
            self.edge_server = None
            self.edge_task = None

    async def start_edge(self, port: int | None = None) -> None:
        port = (
            port
            if port is not None
            else (int(self.edge_url.rsplit(":", 1)[1]) if self.edge_url else 0)
        )
        self.edge_server, self.edge_task, self.edge_url = await _start_edge(self, port)

    _ports: dict[str, int] = field(default_factory=dict)


def edge_state(stack: Stack) -> EdgeState:
    """The running edge's state (its live upstream and its fan-out)."""
    assert stack.edge_server is not None
    app = stack.edge_server.config.app
    assert isinstance(app, Starlette)
    state: EdgeState = app.state.edge
    return state


def service_settings(name: str, config: StackConfig, port: int) -> Any:
    grpc = GrpcServerSettings(port=port, grace_seconds=1.0)
    database = DatabaseSettings(config.database_url, min_connections=1, max_connections=8)
    redis = RedisSettings(config.redis_url, key_prefix=config.prefix)
    verifier = VerifierSettings(
        issuer="scoreboard",
        audience="scoreboard",
        jwks_file=config.keys.jwks,
        jwks_refresh_seconds=1.0,
    )
    if name == "auth":
        settings: Any = auth_service.config.Settings(
            grpc=grpc,
            database=database,
            redis=redis,
            verifier=verifier,
            signing_key_file=config.keys.private,
            # Every test registers from 127.0.0.1; tests of the limit set their own.
            registration_limits=auth_service.config.RegistrationLimits(per_address=1_000_000),
        )
    elif name == "score":
        settings = score_service.config.Settings(
            grpc=grpc,
            database=database,
            redis=redis,
            verifier=verifier,
            ticket_secret=b"test-ticket-secret-" + b"x" * 32,
            relay=score_service.config.RelaySettings(sweep_seconds=0.2),
        )
    elif name == "leaderboard":
        settings = leaderboard_service.config.Settings(
            grpc=grpc,
            database=database,
            redis=redis,
            verifier=verifier,
            consumer=leaderboard_service.config.ConsumerSettings(
                # No trimming: tests read the whole stream afterwards (test_trim turns it on).
                name=f"test-{secrets.token_hex(3)}",
                block_ms=200,
                check_seconds=0,
                trim_seconds=0,
            ),
        )
    else:
        settings = stream_service.config.Settings(grpc=grpc, redis=redis, verifier=verifier)
    overrides = getattr(config, name)
    return dataclasses.replace(settings, **overrides) if overrides else settings


_BUILDERS: dict[str, Callable[[Any, Deps], Awaitable[RunningServer]]] = {
    "auth": auth_service.server.build_server,
    "score": score_service.server.build_server,
    "leaderboard": leaderboard_service.server.build_server,
    "stream": stream_service.server.build_server,
}


async def _start_service(name: str, config: StackConfig, port: int) -> Service:
    settings = service_settings(name, config, port)
    redis = open_redis(settings.redis, name=f"test-{name}")
    verifier = await open_verifier(settings.verifier, redis, Keys(config.prefix))
    pool = await open_pool(settings.database, name=f"test-{name}") if name != "stream" else None
    deps = Deps(redis=redis, verifier=verifier, pool=pool)
    running = await _BUILDERS[name](settings, deps)
    return Service(running, deps, running.port)


async def _close_deps(deps: Deps) -> None:
    await deps.verifier.aclose()
    if deps.pool is not None:
        await deps.pool.close()
    await deps.redis.aclose()


def edge_settings(stack: Stack) -> edge.config.Settings:
    config = stack.config
    settings = edge.config.Settings(
        host="127.0.0.1",
        port=0,
        endpoints=Endpoints(
            auth=stack.address("auth"),
            score=stack.address("score"),
            leaderboard=stack.address("leaderboard"),
            stream=stack.address("stream"),
        ),
        redis=RedisSettings(config.redis_url, key_prefix=config.prefix),
        verifier=VerifierSettings(
            issuer="scoreboard", audience="scoreboard", jwks_file=config.keys.jwks
        ),
        credentials=ClientCredentials("edge", stack.edge_secret),
        websocket=dataclasses.replace(edge.config.WebSocketSettings(), **config.websocket),
        grace_seconds=1.0,
        # Every test refreshes from 127.0.0.1 (a per-address limit); tests of the limit set theirs.
        refreshes_per_minute=1_000_000,
    )
    return dataclasses.replace(settings, **config.edge) if config.edge else settings


async def _start_edge(stack: Stack, port: int) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    settings = edge_settings(stack)
    app = create_app(settings)
    server = uvicorn.Server(build_config(settings, app))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    state = app.state.edge
    await asyncio.wait_for(state.live.connected.wait(), 10)
    return server, task, f"http://127.0.0.1:{bound}"


async def create_accounts(pool: Pool) -> tuple[str, str, str]:
    """The edge's, a game server's and an admin service account; returns their secrets."""
    from auth_service.config import PasswordSettings

    store = AuthStore(pool)
    passwords = Passwords(PasswordSettings())
    secrets_by_client = {}
    for client, scopes in (
        ("edge", ("leaderboard:read", "stream:watch")),
        ("game-server", ("scores:write", "leaderboard:read", "stream:watch")),
        ("admin-tool", tuple(sorted(ALL_SCOPES))),
    ):
        secret = secrets.token_urlsafe(24)
        await store.save_service_account(client, await passwords.hash(secret), scopes)
        secrets_by_client[client] = secret
    return (
        secrets_by_client["admin-tool"],
        secrets_by_client["game-server"],
        secrets_by_client["edge"],
    )


@asynccontextmanager
async def running_stack(config: StackConfig) -> AsyncIterator[Stack]:
    pool = await open_pool(DatabaseSettings(config.database_url, max_connections=4), name="test")
    redis = aioredis.Redis.from_url(config.redis_url)
    admin, game, edge_secret = await create_accounts(pool)
    stack = Stack(config, {}, redis, pool, admin, game, edge_secret)
    try:
        for name in SERVICES:
            stack.services[name] = await _start_service(name, config, 0)
            stack._ports[name] = stack.services[name].port
        if config.with_edge:
            await stack.start_edge(0)
        yield stack
    finally:
        await stack.stop_edge()
        for name in reversed(list(stack.services)):
            await stack.stop_service(name, grace=0.5)
        await redis.aclose()
        await pool.close()
