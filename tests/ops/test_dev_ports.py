"""`make run`'s port check reports only a live listener: the previous run's connections left in
TIME_WAIT on a server port (Ctrl-C, then `make run` again) do not make it refuse to start, since
the servers bind past them with SO_REUSEADDR."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.devstack import check_ports_free, start_stack

HOST = "127.0.0.1"


@pytest.fixture
def live_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        yield listener.getsockname()[1]


def _time_wait_port() -> int:
    """A port with no listener whose own side holds a connection in TIME_WAIT: the server end
    closes first (the active close keeps TIME_WAIT), then the client, then the listener. The
    listener sets SO_REUSEADDR as uvicorn's and gRPC's do (Linux lets a bind pass a TIME_WAIT
    connection only when both sides set it)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen()
        port: int = listener.getsockname()[1]
        client = socket.create_connection((HOST, port), timeout=5)
        accepted, _ = listener.accept()
        accepted.close()
        assert client.recv(1) == b""  # the server's FIN arrived
        client.close()
    return port


def _plain_bind_error(port: int) -> int | None:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            return exc.errno
        return None


def test_a_port_in_time_wait_passes_the_check() -> None:
    port = _time_wait_port()
    # The situation of the issue: a bind without SO_REUSEADDR is refused for this port.
    assert _plain_bind_error(port) == errno.EADDRINUSE
    check_ports_free({"score": port}, HOST)
    check_ports_free({"edge": port}, HOST)


def test_a_live_listener_fails_the_check(live_port: int) -> None:
    with pytest.raises(RuntimeError, match=f"port {live_port} \\(score\\) is already in use"):
        check_ports_free({"score": live_port}, HOST)
    with pytest.raises(RuntimeError, match="set SCOREBOARD_EDGE_PORT"):
        check_ports_free({"edge": live_port}, HOST)


def test_make_run_refuses_a_port_with_a_live_listener(live_port: int, tmp_path: Path) -> None:
    environ = {"SCOREBOARD_DATA_DIR": str(tmp_path), "SCOREBOARD_SCORE_PORT": str(live_port)}
    with pytest.raises(RuntimeError, match="set SCOREBOARD_SCORE_PORT"):
        start_stack(environ, quiet=True)
