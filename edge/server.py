"""Running the edge on uvicorn: our WebSocket protocol, heartbeats, and a drain on SIGTERM that
first reports not-ready (healthz 503), then closes sockets with 1012 so clients reconnect
elsewhere."""

from __future__ import annotations

import logging
import resource
import socket
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from common.lifecycle import tune_gc
from common.logs import redact, setup_logging
from edge.app import create_app
from edge.config import Settings
from edge.state import EdgeState
from edge.ws_protocol import FanoutProtocol


class QuietQueries(logging.Filter):
    """On uvicorn's loggers: drop the per-connection WebSocket access lines (like HTTP access
    logs, which are off) and redact whatever else carries a query string (?token=, ?ticket=)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'):
            return False
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


QUIET_QUERIES = QuietQueries()


class EdgeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state: EdgeState | None = getattr(self._app.state, "edge", None)
        if state is not None:
            state.shutting_down = True
        super().handle_exit(sig, frame)


def build_config(settings: Settings, app: Starlette) -> uvicorn.Config:
    # uvicorn (and the websockets parser it drives) log request lines with their query strings,
    # where ?token= and ?ticket= live: drop or redact them at the logger, whoever handles it.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(QUIET_QUERIES)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws=FanoutProtocol,
        ws_max_size=settings.websocket.max_message_bytes,
        ws_ping_interval=settings.websocket.heartbeat_seconds,
        ws_ping_timeout=settings.websocket.heartbeat_seconds,
        ws_per_message_deflate=False,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=settings.trust_forwarded,
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        timeout_graceful_shutdown=int(settings.grace_seconds),
        backlog=4096,
    )


def raise_open_files_limit() -> int:
    """Every viewer is a file descriptor: raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other edge processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, sock: socket.socket | None = None) -> None:
    setup_logging("edge", settings.log_level)
    raise_open_files_limit()
    tune_gc()
    if sock is None and settings.reuse_port:
        sock = reuse_port_socket(settings.host, settings.port)
    app = create_app(settings)
    server = EdgeServer(build_config(settings, app), app)
    server.run(sockets=[sock] if sock else None)
