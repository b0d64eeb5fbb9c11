"""The gRPC server bootstrap every service uses: grpc.aio, health with one status per service,
reflection, the interceptor chain, keepalive and connection-age settings, graceful shutdown
(health NOT_SERVING first, then drain)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from common.auth.tokens import TokenVerifier
from common.config import GrpcServerSettings
from common.grpc_interceptors import (
    AuthInterceptor,
    DeadlineInterceptor,
    ErrorInterceptor,
    MetricsInterceptor,
    RequestIdInterceptor,
)
from common.lifecycle import cancel_and_wait, wait_for_shutdown

log = logging.getLogger("scoreboard.grpc")

# Streams meant to stay open for hours: never given the default deadline.
LONG_LIVED_METHODS = frozenset({"/scoreboard.stream.v1.StreamService/WatchTop10"})


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full name and how to add its servicer."""

    name: str
    add: Callable[[grpc.aio.Server], None]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    services: tuple[str, ...]
    # Background work of the service (relay, consumer, subscription), cancelled after the drain.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Called after the drain, before the tasks are cancelled (e.g. to end open streams).
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The Prometheus /metrics server (SCOREBOARD_METRICS_PORT), closed last.
    metrics_server: WSGIServer | None = None
    # Objects of the service worth inspecting from outside (tests, diagnostics), by name.
    parts: dict[str, Any] = field(default_factory=dict)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING first (so balancers stop sending), then drain in-flight calls,
        then stop background work."""
        await self.health.enter_graceful_shutdown()
        for callback in self.on_stop:
            await callback()
        await self.server.stop(grace)
        await cancel_and_wait(*self.tasks)
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.shutdown)
            self.metrics_server.server_close()

    async def serve_until_signal(self, grace: float) -> None:
        name = await wait_for_shutdown()
        log.info("shutting down", extra={"signal": name, "grace_seconds": grace})
        await self.stop(grace)
        log.info("stopped")


def server_options(settings: GrpcServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Ping idle connections so streams survive idle hours behind NATs and proxies.
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # On a server this is the floor for *received* pings (GRPC_ARG_HTTP2_MIN_RECV_PING_
        # INTERVAL_WITHOUT_DATA_MS): clients pinging more often get GOAWAY too_many_pings.
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(settings.min_client_ping_seconds * 1000),
        ),
        ("grpc.http2.max_pings_without_data", 0),
        # Recycle connections so new replicas get their share of long-lived clients.
        ("grpc.max_connection_age_ms", settings.max_connection_age_seconds * 1000),
        ("grpc.max_connection_age_grace_ms", settings.max_connection_age_grace_seconds * 1000),
        ("grpc.so_reuseport", 0),
    ]


async def start_server(
    settings: GrpcServerSettings,
    services: Sequence[ServiceBinding],
    verifier: TokenVerifier,
    *,
    public_methods: frozenset[str] = frozenset(),
    long_lived_methods: frozenset[str] = LONG_LIVED_METHODS,
) -> RunningServer:
    # Outermost first: the deadline sits inside the error interceptor (its DEADLINE_EXCEEDED
    # becomes a status with ErrorInfo) and outside auth (a token check counts against it).
    interceptors: list[grpc.aio.ServerInterceptor] = [
        RequestIdInterceptor(),
        MetricsInterceptor(),
        ErrorInterceptor(),
        DeadlineInterceptor(settings.default_deadline_seconds, long_lived_methods),
        AuthInterceptor(verifier, public_methods),
    ]
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings))
    for service in services:
        service.add(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = tuple(s.name for s in services)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC port {settings.host}:{settings.port}")
    await server.start()
    for name in ("", *names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_server = None
    if settings.metrics_port is not None:
        metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
    log.info("gRPC server listening", extra={"port": port, "services": list(names)})
    return RunningServer(
        server=server, port=port, health=health, services=names, metrics_server=metrics_server
    )


def full_method(service_name: str, method: str) -> str:
    return f"/{service_name}/{method}"
