"""edge settings, read once at start."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from common.config import (
    ENV_PREFIX,
    ClientCredentials,
    ConfigError,
    Endpoints,
    Env,
    RedisSettings,
    VerifierSettings,
)

# The peers whose X-Forwarded-* headers are believed (uvicorn's own default).
LOOPBACK_PROXIES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class WebSocketSettings:
    # Browser origins allowed to open /ws; empty means same-origin only. Clients that send no
    # Origin (non-browsers) are not affected.
    origins: tuple[str, ...] = ()
    allow_anonymous: bool = False
    # At most one message per viewer per tick, whatever the upstream rate.
    tick_seconds: float = 0.05
    heartbeat_seconds: float = 30.0
    max_connections: int = 20_000
    max_per_user: int = 5
    max_message_bytes: int = 4096
    messages_per_second: float = 10.0
    # A viewer with this much unsent data is skipped for the tick...
    slow_viewer_bytes: int = 64 * 1024
    # ...and closed when it stays stuck this many seconds.
    slow_viewer_seconds: float = 10.0
    ticket_seconds: int = 30
    # Kernel send buffer of each viewer socket (SO_SNDBUF); None keeps the kernel's autotuning.
    # A cap bounds kernel memory per slow viewer and makes one that stopped reading stuck sooner.
    send_buffer_bytes: int | None = None
    # The upstream WatchTop10 stream of a board other than the default one is closed after this
    # long without a viewer on this process.
    board_idle_seconds: float = 60.0


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    endpoints: Endpoints
    redis: RedisSettings
    verifier: VerifierSettings
    credentials: ClientCredentials
    websocket: WebSocketSettings = WebSocketSettings()
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 16 * 1024
    actions_per_minute: int = 100
    # Per minute, 0 for none: POST /api/actions/start and POST /api/ws-ticket per user, POST
    # /api/auth/refresh per client address (it carries no access token).
    starts_per_minute: int = 60
    ws_tickets_per_minute: int = 30
    refreshes_per_minute: int = 30
    # Per minute and client address, 0 for none: anonymous reads of pages past the first of
    # GET /api/leaderboard/entries (those with a pageToken; the first page, up to the top 100,
    # is free), so scraping the whole ranking without an account is slow.
    anonymous_deep_pages_per_minute: int = 30
    # The deadline of every upstream gRPC call (the live WatchTop10 stream excepted).
    upstream_timeout_seconds: float = 5.0
    # Trust X-Forwarded-For from the ingress for client addresses.
    trust_forwarded: bool = False
    # With trust_forwarded: the peer addresses or networks (CIDR) of the proxies whose
    # X-Forwarded-Proto/-For uvicorn believes; "*" is any. Behind a Kubernetes ingress the peer is
    # the ingress controller's pod, never loopback: without its network here the scheme stays
    # http, so no HSTS and no Secure refresh cookie.
    forwarded_allow_ips: tuple[str, ...] = LOOPBACK_PROXIES
    # Serve the browser UI at /.
    serve_ui: bool = True
    log_level: str = "INFO"
    grace_seconds: float = 10.0
    # Bind the port with SO_REUSEPORT so several edge processes share it (the kernel spreads
    # connections over them); each keeps its own upstream stream.
    reuse_port: bool = False

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        return cls(
            host=env.text("EDGE_HOST", "127.0.0.1"),
            port=env.integer("EDGE_PORT", 8000, minimum=0),
            endpoints=Endpoints.from_env(env),
            redis=RedisSettings.from_env(env),
            verifier=VerifierSettings.from_env(env),
            credentials=ClientCredentials.from_env(env),
            websocket=WebSocketSettings(
                origins=env.items("WS_ORIGINS"),
                allow_anonymous=env.flag("WS_ANONYMOUS", False),
                tick_seconds=env.integer("WS_TICK_MS", 50, minimum=1) / 1000,
                heartbeat_seconds=env.number("WS_HEARTBEAT_SECONDS", 30.0, minimum=1.0),
                max_connections=env.integer("WS_MAX_CONNECTIONS", 20_000, minimum=1),
                max_per_user=env.integer("WS_MAX_PER_USER", 5, minimum=1),
                max_message_bytes=env.integer("WS_MAX_MESSAGE_BYTES", 4096, minimum=128),
                messages_per_second=env.number("WS_MESSAGES_PER_SECOND", 10.0, minimum=0.1),
                slow_viewer_bytes=env.integer("WS_SLOW_VIEWER_BYTES", 64 * 1024, minimum=1024),
                slow_viewer_seconds=env.number("WS_SLOW_VIEWER_SECONDS", 10.0, minimum=0.1),
                ticket_seconds=env.integer("WS_TICKET_SECONDS", 30, minimum=1),
                send_buffer_bytes=env.integer("WS_SEND_BUFFER_BYTES", 0, minimum=0) or None,
                board_idle_seconds=env.number("WS_BOARD_IDLE_SECONDS", 60.0, minimum=0.1),
            ),
            cors_origins=env.items("CORS_ORIGINS"),
            max_body_bytes=env.integer("MAX_BODY_BYTES", 16 * 1024, minimum=256),
            actions_per_minute=env.integer("ACTIONS_PER_MINUTE", 100, minimum=1),
            starts_per_minute=env.integer("STARTS_PER_MINUTE", 60, minimum=0),
            ws_tickets_per_minute=env.integer("WS_TICKETS_PER_MINUTE", 30, minimum=0),
            refreshes_per_minute=env.integer("REFRESHES_PER_MINUTE", 30, minimum=0),
            anonymous_deep_pages_per_minute=env.integer(
                "ANONYMOUS_DEEP_PAGES_PER_MINUTE", 30, minimum=0
            ),
            upstream_timeout_seconds=env.number("UPSTREAM_TIMEOUT_SECONDS", 5.0, minimum=0.1),
            trust_forwarded=env.flag("TRUST_FORWARDED", False),
            forwarded_allow_ips=_proxies(env.items("FORWARDED_ALLOW_IPS", LOOPBACK_PROXIES)),
            serve_ui=env.flag("SERVE_UI", True),
            log_level=env.text("LOG_LEVEL", "INFO"),
            grace_seconds=env.number("GRACE_SECONDS", 10.0, minimum=0.0),
            reuse_port=env.flag("EDGE_REUSE_PORT", False),
        )


def _proxies(items: tuple[str, ...]) -> tuple[str, ...]:
    """Addresses or networks, checked here: uvicorn would take a typo for a socket name."""
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}FORWARDED_ALLOW_IPS must list IP addresses, networks or *, "
                f"got {item!r}"
            ) from None
    return items
