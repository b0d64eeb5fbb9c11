"""Settings read once from the environment at start and passed down; no globals.

Every service composes its own frozen settings object from the pieces here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

ENV_PREFIX = "SCOREBOARD_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Env:
    """Typed access to SCOREBOARD_* variables of one environment mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)

    def raw(self, name: str) -> str | None:
        value = self._environ.get(ENV_PREFIX + name)
        return value if value not in (None, "") else None

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            raise ConfigError(f"{ENV_PREFIX}{name} must be set")
        return value

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name} must be an integer, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ConfigError(f"{ENV_PREFIX}{name} must be at least {minimum}, got {number}")
        return number

    def number(self, name: str, default: float, *, minimum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name} must be a number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ConfigError(f"{ENV_PREFIX}{name} must be at least {minimum}, got {number}")
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{ENV_PREFIX}{name} must be true or false, got {value!r}")

    def items(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def path(self, name: str, default: Path | None = None) -> Path | None:
        value = self.raw(name)
        return Path(value) if value is not None else default


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    min_connections: int = 1
    max_connections: int = 10
    # How long a call waits for a free pooled connection before it is answered UNAVAILABLE
    # (a handler with a caller's deadline may wait less), and the time budget of opening a
    # connection. A connection whose peer stops answering is dropped by TCP keepalives and
    # tcp_user_timeout within about `dead_link_seconds`, so no call waits on a dead link.
    pool_timeout_seconds: float = 2.0
    connect_timeout_seconds: int = 3
    dead_link_seconds: int = 10

    @classmethod
    def from_env(cls, env: Env, *, max_default: int = 10) -> DatabaseSettings:
        return cls(
            url=env.required("DATABASE_URL"),
            min_connections=env.integer("DB_MIN_CONNECTIONS", 1, minimum=0),
            max_connections=env.integer("DB_MAX_CONNECTIONS", max_default, minimum=1),
            pool_timeout_seconds=env.number("DB_POOL_TIMEOUT_SECONDS", 2.0, minimum=0.05),
            connect_timeout_seconds=env.integer("DB_CONNECT_TIMEOUT_SECONDS", 3, minimum=1),
            dead_link_seconds=env.integer("DB_DEAD_LINK_SECONDS", 10, minimum=2),
        )


@dataclass(frozen=True)
class RedisSettings:
    url: str
    # Prepended to every key and channel, so several deployments (or test runs) share a server.
    key_prefix: str = "sb:"
    # Refuse to start (auth_service) when Redis's maxmemory-policy could evict keys (so
    # revocations could be lost); off: only warn. For production.
    require_noeviction: bool = False
    # The time budget of one Redis reply (a blocking read gets its block time on top), of
    # opening a connection, and of waiting for a free pooled connection: a paused or
    # unreachable Redis fails a call within it instead of hanging it.
    timeout_seconds: float = 1.0
    connect_timeout_seconds: float = 1.0
    pool_timeout_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Env) -> RedisSettings:
        return cls(
            url=env.required("REDIS_URL"),
            key_prefix=env.text("KEY_PREFIX", "sb:"),
            require_noeviction=env.flag("REQUIRE_NOEVICTION", False),
            timeout_seconds=env.number("REDIS_TIMEOUT_SECONDS", 1.0, minimum=0.01),
            connect_timeout_seconds=env.number("REDIS_CONNECT_TIMEOUT_SECONDS", 1.0, minimum=0.01),
            pool_timeout_seconds=env.number("REDIS_POOL_TIMEOUT_SECONDS", 2.0, minimum=0.0),
        )


# Verification only ever uses public keys: no HMAC (a public key must never become a shared
# secret) and never "none".
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)


@dataclass(frozen=True)
class VerifierSettings:
    """How every process verifies access tokens (DESIGN decision 7)."""

    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("EdDSA", "RS256")
    leeway_seconds: int = 30
    # An unknown kid refetches the JWKS at most once per this interval.
    jwks_refresh_seconds: float = 60.0
    # Known keys are refetched when older than this, so a key removed from the set stops
    # verifying without a restart.
    jwks_max_age_seconds: float = 600.0
    # Check the jti denylist (needs Redis, and auth_service to keep it loaded).
    denylist: bool = True
    # Accepted "typ" headers: at+jwt is ours (RFC 9068); "JWT" is what Keycloak sends.
    token_types: tuple[str, ...] = ("at+jwt",)

    @classmethod
    def from_env(cls, env: Env) -> VerifierSettings:
        jwks_file = env.path("JWKS_FILE")
        jwks_url = env.optional("JWKS_URL")
        if jwks_file is None and jwks_url is None:
            raise ConfigError(f"{ENV_PREFIX}JWKS_FILE or {ENV_PREFIX}JWKS_URL must be set")
        algorithms = env.items("JWT_ALGORITHMS", ("EdDSA", "RS256"))
        refused = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused or not algorithms:
            raise ConfigError(
                f"{ENV_PREFIX}JWT_ALGORITHMS may only name asymmetric algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); refused: {', '.join(refused)}"
            )
        return cls(
            issuer=env.text("JWT_ISSUER", "scoreboard"),
            audience=env.text("JWT_AUDIENCE", "scoreboard"),
            jwks_file=jwks_file,
            jwks_url=jwks_url,
            algorithms=algorithms,
            leeway_seconds=env.integer("JWT_LEEWAY_SECONDS", 30, minimum=0),
            jwks_refresh_seconds=env.number("JWKS_REFRESH_SECONDS", 60.0, minimum=1.0),
            jwks_max_age_seconds=env.number("JWKS_MAX_AGE_SECONDS", 600.0, minimum=1.0),
            denylist=env.flag("DENYLIST", True),
            token_types=env.items("JWT_TOKEN_TYPES", ("at+jwt",)),
        )


@dataclass(frozen=True)
class GrpcServerSettings:
    host: str = "127.0.0.1"
    port: int = 0
    # Seconds in-flight calls get to finish on SIGTERM.
    grace_seconds: float = 10.0
    max_message_bytes: int = 1 << 20
    # Connections are recycled after this age so load rebalances across replicas.
    max_connection_age_seconds: int = 300
    max_connection_age_grace_seconds: int = 30
    metrics_port: int | None = None
    # How often background gauges (outbox backlog, stream lag) are sampled.
    metrics_sample_seconds: float = 5.0
    # The server pings idle connections this often (and drops them without an answer within
    # keepalive_timeout_seconds), and accepts client pings this often: clients ping every 30 s
    # (common.grpc_client), so idle streams survive for hours.
    keepalive_seconds: float = 60.0
    keepalive_timeout_seconds: float = 20.0
    min_client_ping_seconds: float = 10.0
    # The deadline of a call whose caller set none (not for long-lived streams such as
    # WatchTop10): it then ends with DEADLINE_EXCEEDED instead of waiting without a limit.
    default_deadline_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Env, *, default_port: int) -> GrpcServerSettings:
        metrics = env.integer("METRICS_PORT", -1)
        return cls(
            host=env.text("GRPC_HOST", "127.0.0.1"),
            port=env.integer("GRPC_PORT", default_port, minimum=0),
            grace_seconds=env.number("GRACE_SECONDS", 10.0, minimum=0.0),
            max_message_bytes=env.integer("GRPC_MAX_MESSAGE_BYTES", 1 << 20, minimum=1024),
            max_connection_age_seconds=env.integer(
                "GRPC_MAX_CONNECTION_AGE_SECONDS", 300, minimum=1
            ),
            max_connection_age_grace_seconds=env.integer(
                "GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS", 30
            ),
            metrics_port=None if metrics < 0 else metrics,
            metrics_sample_seconds=env.number("METRICS_SAMPLE_SECONDS", 5.0, minimum=0.05),
            keepalive_seconds=env.number("GRPC_KEEPALIVE_SECONDS", 60.0, minimum=1.0),
            keepalive_timeout_seconds=env.number(
                "GRPC_KEEPALIVE_TIMEOUT_SECONDS", 20.0, minimum=1.0
            ),
            min_client_ping_seconds=env.number("GRPC_MIN_CLIENT_PING_SECONDS", 10.0, minimum=0.1),
            default_deadline_seconds=env.number("GRPC_DEFAULT_DEADLINE_SECONDS", 10.0, minimum=0.1),
        )


@dataclass(frozen=True)
class ClientCredentials:
    """A service account's client-credentials pair (for the edge and game servers). Tokens come
    from auth_service, or from an external issuer's OAuth 2.0 token endpoint when token_url is
    set (so auth_service can be left out)."""

    client_id: str
    client_secret: str = field(repr=False)
    token_url: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> ClientCredentials:
        return cls(
            client_id=env.required("CLIENT_ID"),
            client_secret=env.required("CLIENT_SECRET"),
            token_url=env.optional("TOKEN_URL"),
        )


@dataclass(frozen=True)
class Endpoints:
    """Where the gRPC services are. In Kubernetes: dns:///<service>:<port> (headless)."""

    auth: str
    score: str
    leaderboard: str
    stream: str

    @classmethod
    def from_env(cls, env: Env) -> Endpoints:
        return cls(
            auth=env.text("AUTH_ADDR", "127.0.0.1:50051"),
            score=env.text("SCORE_ADDR", "127.0.0.1:50052"),
            leaderboard=env.text("LEADERBOARD_ADDR", "127.0.0.1:50053"),
            stream=env.text("STREAM_ADDR", "127.0.0.1:50054"),
        )


DEFAULT_PORTS = {"auth": 50051, "score": 50052, "leaderboard": 50053, "stream": 50054}


class ServiceBasics(TypedDict):
    grpc: GrpcServerSettings
    database: DatabaseSettings
    redis: RedisSettings
    verifier: VerifierSettings


@dataclass(frozen=True)
class ServiceSettings:
    """What the Settings of auth_service, score_service and leaderboard_service start with:
    the gRPC server, PostgreSQL, Redis and the token verifier."""

    grpc: GrpcServerSettings
    database: DatabaseSettings
    redis: RedisSettings
    verifier: VerifierSettings

    @staticmethod
    def basics_from_env(
        env: Env,
        service: str,
        *,
        max_connections: int,
        verifier: VerifierSettings | None = None,
    ) -> ServiceBasics:
        """The four, read in that order (`verifier` when the service has read it already)."""
        return ServiceBasics(
            grpc=GrpcServerSettings.from_env(env, default_port=DEFAULT_PORTS[service]),
            database=DatabaseSettings.from_env(env, max_default=max_connections),
            redis=RedisSettings.from_env(env),
            verifier=VerifierSettings.from_env(env) if verifier is None else verifier,
        )


DEFAULT_BOARD = "default"
