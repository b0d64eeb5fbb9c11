"""`scoreboard run` (make run): the whole mesh on one machine.

Starts PostgreSQL and Redis embedded unless SCOREBOARD_DATABASE_URL / SCOREBOARD_REDIS_URL name
servers, applies migrations, creates development keys and secrets, starts auth_service,
score_service, leaderboard_service, stream_service and the edge as child processes, waits until
each is healthy, prints the URL, and on Ctrl-C or SIGTERM stops everything in order (edge first,
databases last). Data lives in SCOREBOARD_DATA_DIR (default .data/) and survives restarts.

Scaling out on one machine: SCOREBOARD_SCORE_REPLICAS runs that many score_service processes,
each on its own port (the first on SCOREBOARD_SCORE_PORT, the others on free ports), and every
client balances per call over all of them (an `ipv4:` target list with round_robin).
SCOREBOARD_EDGE_PROCESSES runs that many edges on the one edge port (SO_REUSEPORT: the kernel
spreads connections over them), each with its own upstream WatchTop10 stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.auth.principal import SCOPE_ADMIN
from common.auth.signing_keys import ensure_keys
from common.config import DEFAULT_PORTS, ClientCredentials, Endpoints, Env
from ops.dev_boards import DevBoard, ensure_dev_board
from ops.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent, free_port
from ops.migrate import ensure_database, migrate

SERVICES = ("auth_service", "score_service", "leaderboard_service", "stream_service")
EDGE_SCOPES = "leaderboard:read stream:watch"
GAME_SERVER_SCOPES = "scores:write leaderboard:read stream:watch"
# The dev stack's admin account: its weekly board and the CLI's admin commands.
DEV_ADMIN = "dev-admin"


def _secret(path: Path, length: int = 32) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(length))
    return path.read_text().strip()


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    edge_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start_child(self, name: str, module: str, extra: dict[str, str] | None = None) -> None:
        log_file = open(self.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**self.env, **(extra or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops children in order
            preexec_fn=die_with_parent,
        )
        log_file.close()
        self.children.append((name, process))

    def stop(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, process in reversed(self.children):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.children.clear()
        (self.data_dir / STACK_FILE).unlink(missing_ok=True)
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def wait_for_stop(self) -> tuple[str, subprocess.Popen[bytes]] | None:
        """Block until SIGINT or SIGTERM (None) or until a child exits (that child)."""
        stopping = False

        def request_stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stopping:
            for name, process in self.children:
                if process.poll() is not None:
                    return name, process
            time.sleep(0.2)
        return None


def save_service_account(env: dict[str, str], client_id: str, secret: str, scopes: str) -> None:
    """Create or rotate a service account (the secret travels in the environment, never in
    the process list)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "auth_service",
            "create-service-account",
            "--client-id",
            client_id,
            "--scopes",
            scopes,
        ],
        env={**env, "SCOREBOARD_SERVICE_ACCOUNT_SECRET": secret},
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def _wait_grpc(
    address: str, name: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see its log")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{name} did not become healthy in {timeout:.0f}s")


async def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"edge exited with {process.returncode}; see its log")
            try:
                reply = await client.get(url + "/healthz", timeout=1)
                if reply.status_code == 200 and reply.json().get("liveStream"):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"edge did not become ready in {timeout:.0f}s")


def _wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Wait until this very process listens on `port` (edges sharing a port with SO_REUSEPORT:
    a health check may be answered by another one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"edge exited with {process.returncode}; see its log")
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(process.pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"edge did not listen on port {port} in {timeout:.0f}s")


def check_ports_free(ports: dict[str, int], edge_host: str) -> None:
    """Refuse to start when a port is taken: a health check would otherwise reach whatever
    already listens there and report a stack that is not ours.

    The probe binds with SO_REUSEADDR, as uvicorn and gRPC do, so only a live listener counts:
    the previous run's connections that sit in TIME_WAIT after Ctrl-C would fail a plain bind
    for about a minute, yet the servers themselves can bind past them."""
    for name, port in ports.items():
        host = edge_host if name == "edge" else "127.0.0.1"
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                variable = (
                    "SCOREBOARD_EDGE_PORT" if name == "edge" else f"SCOREBOARD_{name.upper()}_PORT"
                )
                raise RuntimeError(
                    f"port {port} ({name}) is already in use; stop what uses it or set {variable}"
                ) from None


def start_stack(environ: dict[str, str] | None = None, *, quiet: bool = False) -> Stack:
    base = dict(os.environ if environ is None else environ)
    env_reader = Env(base)
    data_dir = Path(env_reader.text("DATA_DIR", ".data")).resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    edge_host = env_reader.text("EDGE_HOST", "127.0.0.1")
    edge_port = env_reader.integer("EDGE_PORT", 8000)
    stack = Stack(data_dir, {}, f"http://{edge_host}:{edge_port}")
    addresses = {
        name: f"127.0.0.1:{env_reader.integer(name.upper() + '_PORT', port)}"
        for name, port in DEFAULT_PORTS.items()
    }
    check_ports_free(
        {**{k: int(v.rsplit(":", 1)[1]) for k, v in addresses.items()}, "edge": edge_port},
        edge_host,
    )
    score_ports = [int(addresses["score"].rsplit(":", 1)[1])]
    score_ports += [
        free_port() for _ in range(env_reader.integer("SCORE_REPLICAS", 1, minimum=1) - 1)
    ]
    if len(score_ports) > 1:
        addresses["score"] = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in score_ports)
    edge_processes = env_reader.integer("EDGE_PROCESSES", 1, minimum=1)
    try:
        database_url = env_reader.optional("DATABASE_URL")
        if database_url is None:
            stack.postgres = EmbeddedPostgres(data_dir / "postgres")
            database_url = stack.postgres.url("scoreboard")
        redis_url = env_reader.optional("REDIS_URL")
        if redis_url is None:
            stack.redis = EmbeddedRedis.start(data_dir / "redis", persistent=True)
            redis_url = stack.redis.url
        asyncio.run(ensure_database(database_url))
        asyncio.run(migrate(database_url))
        key_file = data_dir / "keys" / "signing.pem"
        jwks_file = data_dir / "keys" / "jwks.json"
        ensure_keys(key_file, jwks_file)
        env = {
            **base,
            "PYTHONUNBUFFERED": "1",
            "SCOREBOARD_DATABASE_URL": database_url,
            "SCOREBOARD_REDIS_URL": redis_url,
            "SCOREBOARD_JWKS_FILE": str(jwks_file),
            "SCOREBOARD_AUTH_ADDR": addresses["auth"],
            "SCOREBOARD_SCORE_ADDR": addresses["score"],
            "SCOREBOARD_LEADERBOARD_ADDR": addresses["leaderboard"],
            "SCOREBOARD_STREAM_ADDR": addresses["stream"],
        }
        env.setdefault("SCOREBOARD_WS_ANONYMOUS", "true")
        # make demo and make bench register their players from 127.0.0.1.
        env.setdefault("SCOREBOARD_REGISTRATIONS_PER_ADDRESS", "100000")
        stack.env = env
        edge_secret = _secret(data_dir / "secrets" / "edge-client-secret")
        game_secret = _secret(data_dir / "secrets" / "game-server-client-secret")
        admin_secret = _secret(data_dir / "secrets" / f"{DEV_ADMIN}-client-secret")
        for client, secret, scopes in (
            ("edge", edge_secret, EDGE_SCOPES),
            ("game-server", game_secret, GAME_SERVER_SCOPES),
            (DEV_ADMIN, admin_secret, SCOPE_ADMIN),
        ):
            save_service_account(env, client, secret, scopes)
        ticket_secret = _secret(data_dir / "secrets" / "ticket-secret", 48)
        # (process name, module, its one address, its settings)
        children = [
            (
                "auth_service",
                "auth_service",
                addresses["auth"],
                {"SCOREBOARD_SIGNING_KEY_FILE": str(key_file)},
            ),
            *(
                (
                    _replica("score_service", index),
                    "score_service",
                    f"127.0.0.1:{port}",
                    {"SCOREBOARD_TICKET_SECRET": ticket_secret},
                )
                for index, port in enumerate(score_ports)
            ),
            ("leaderboard_service", "leaderboard_service", addresses["leaderboard"], {}),
            ("stream_service", "stream_service", addresses["stream"], {}),
        ]
        for name, module, address, extra in children:
            port = address.rsplit(":", 1)[1]
            stack.start_child(name, module, {**extra, "SCOREBOARD_GRPC_PORT": port})
        for (name, process), (_, _, address, _) in zip(stack.children, children, strict=True):
            asyncio.run(_wait_grpc(address, name, process, 60))
        for index in range(edge_processes):
            stack.start_child(
                _replica("edge", index),
                "edge",
                {
                    "SCOREBOARD_CLIENT_ID": "edge",
                    "SCOREBOARD_CLIENT_SECRET": edge_secret,
                    "SCOREBOARD_EDGE_HOST": edge_host,
                    "SCOREBOARD_EDGE_PORT": str(edge_port),
                    "SCOREBOARD_EDGE_REUSE_PORT": "true" if edge_processes > 1 else "false",
                },
            )
            asyncio.run(_wait_http(stack.edge_url, stack.children[-1][1], 60))
            if edge_processes > 1:  # the port answered, but maybe from an earlier edge
                _wait_listening(stack.children[-1][1], edge_port, 60)
        boards = _dev_boards(env_reader, addresses, admin_secret)
    except BaseException:
        stack.stop()
        raise
    _describe(stack, addresses, database_url, redis_url)
    if not quiet:
        print(f"Scoreboard is running: {stack.edge_url}")
        print(f"  logs: {data_dir / 'logs'}   data: {data_dir}")
        secret_file = data_dir / "secrets" / "game-server-client-secret"
        print(f"  game-server client: id=game-server, secret in {secret_file}")
        admin_file = data_dir / "secrets" / f"{DEV_ADMIN}-client-secret"
        print(f"  admin client (scoreboard boards, ...): id={DEV_ADMIN}, secret in {admin_file}")
        print(f"  boards: {boards}")
        print("  gRPC: " + "  ".join(f"{k}={v}" for k, v in addresses.items()))
        print("Press Ctrl-C to stop.", flush=True)
    return stack


STACK_FILE = "stack.json"


def _dev_boards(env_reader: Env, addresses: dict[str, str], admin_secret: str) -> str:
    """The weekly board beside the default one, through the admin path (issue 17), unless
    SCOREBOARD_DEV_WEEKLY_BOARD=false; what there is, for the banner."""
    if not env_reader.flag("DEV_WEEKLY_BOARD", True):
        return "default (all time)"
    board = DevBoard()
    endpoints = Endpoints(
        auth=addresses["auth"],
        score=addresses["score"],
        leaderboard=addresses["leaderboard"],
        stream=addresses["stream"],
    )
    seeded = asyncio.run(
        ensure_dev_board(endpoints, ClientCredentials(DEV_ADMIN, admin_secret), board)
    )
    done = ["created"] if seeded.created else []
    if seeded.linked:
        done.append(f"now counting {', '.join(seeded.linked)}")
    return (
        f"default (all time); {board.board_id} ({board.name}, resets at {board.reset_schedule!r}"
        f" in {board.time_zone}{'; ' if done else ''}{'; '.join(done)})"
    )


def _replica(name: str, index: int) -> str:
    """Process names: the first replica keeps the service's name, the next are name.2, ..."""
    return name if index == 0 else f"{name}.{index + 1}"


def _describe(stack: Stack, addresses: dict[str, str], database_url: str, redis_url: str) -> None:
    """Write where everything is, for tools such as `scoreboard bench` (removed on stop)."""
    description = {
        "edge_url": stack.edge_url,
        "addresses": addresses,
        "database_url": database_url,
        "redis_url": redis_url,
        "key_prefix": stack.env.get("SCOREBOARD_KEY_PREFIX", "sb:"),
        "pids": {name: process.pid for name, process in stack.children},
        "secrets": str(stack.data_dir / "secrets"),
    }
    path = stack.data_dir / STACK_FILE
    path.write_text(json.dumps(description, indent=2))
    path.chmod(0o600)


def read_description(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / STACK_FILE
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run(environ: dict[str, str] | None = None) -> int:
    try:
        stack = start_stack(environ)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"scoreboard run: {exc}", file=sys.stderr)
        return 1
    code = 0
    try:
        exited = stack.wait_for_stop()
        if exited is not None:
            name, process = exited
            print(f"{name} exited with {process.returncode}; stopping", file=sys.stderr)
            code = 1
    finally:
        print("Stopping…", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return code
