"""A redis-server of a test's own (never the run's shared one), for tests that FLUSHALL it, stop
it, or start it again on the same port as a restarted Redis would come back."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ops.embedded import EmbeddedRedis, free_port


class RedisProcess:
    """One redis-server on a port of its own that survives restarts. Persistent, it keeps its
    data across a stop and start (an append-only file, flushed on SIGTERM); otherwise it comes
    back empty: no keys, streams, groups or scripts.

    Spawned by ops.embedded, without a preexec_fn: a plain fork() of a process whose gRPC threads
    are busy can crash the child before it execs."""

    def __init__(self, folder: Path, *, persistent: bool) -> None:
        self.folder = folder
        self.persistent = persistent
        self.port = free_port()
        self._server: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) on the same port; returns once it accepts connections."""
        assert self._server is None, "already running"
        self._server = EmbeddedRedis.start(self.folder, persistent=self.persistent, port=self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@contextmanager
def redis_process(*, persistent: bool = False) -> Iterator[RedisProcess]:
    """A started RedisProcess in a temporary folder, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="sbtest-redis-") as tmp:
        server = RedisProcess(Path(tmp), persistent=persistent)
        server.start()
        try:
            yield server
        finally:
            server.stop()
