"""score_service settings, read once at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.config import (
    DEFAULT_PORTS,
    ConfigError,
    DatabaseSettings,
    Env,
    GrpcServerSettings,
    RedisSettings,
    VerifierSettings,
)


@dataclass(frozen=True)
class RelaySettings:
    enabled: bool = True
    batch_size: int = 500
    # The relay is woken by NOTIFY; this sweep only bounds the delay of a lost notification.
    sweep_seconds: float = 1.0
    # Approximate cap on the Redis Stream's length.
    stream_max_length: int = 1_000_000


@dataclass(frozen=True)
class AnomalySettings:
    # Flag a user whose points in one UTC day exceed this.
    daily_point_cap: int = 5_000
    # Flag completions (any actions) closer together than this many seconds.
    min_seconds_between_completions: float = 1.0


@dataclass(frozen=True)
class Settings:
    grpc: GrpcServerSettings
    database: DatabaseSettings
    redis: RedisSettings
    verifier: VerifierSettings
    ticket_secret: bytes = field(repr=False)
    ticket_ttl_seconds: int = 600
    relay: RelaySettings = RelaySettings()
    anomalies: AnomalySettings = AnomalySettings()
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        secret = env.required("TICKET_SECRET")
        if len(secret) < 32:
            raise ConfigError("SCOREBOARD_TICKET_SECRET must be at least 32 characters")
        return cls(
            grpc=GrpcServerSettings.from_env(env, default_port=DEFAULT_PORTS["score"]),
            database=DatabaseSettings.from_env(env, max_default=16),
            redis=RedisSettings.from_env(env),
            verifier=VerifierSettings.from_env(env),
            ticket_secret=secret.encode(),
            ticket_ttl_seconds=env.integer("TICKET_TTL_SECONDS", 600, minimum=10),
            relay=RelaySettings(
                enabled=env.flag("RELAY_ENABLED", True),
                batch_size=env.integer("RELAY_BATCH_SIZE", 500, minimum=1),
                sweep_seconds=env.number("RELAY_SWEEP_SECONDS", 1.0, minimum=0.05),
                stream_max_length=env.integer("STREAM_MAX_LENGTH", 1_000_000, minimum=1000),
            ),
            anomalies=AnomalySettings(
                daily_point_cap=env.integer("ANOMALY_DAILY_POINT_CAP", 5_000, minimum=1),
                min_seconds_between_completions=env.number(
                    "ANOMALY_MIN_SECONDS_BETWEEN_COMPLETIONS", 1.0, minimum=0.0
                ),
            ),
            log_level=env.text("LOG_LEVEL", "INFO"),
        )
