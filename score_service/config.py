"""score_service settings, read once at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.config import (
    ConfigError,
    Env,
    ServiceSettings,
)


@dataclass(frozen=True)
class RelaySettings:
    enabled: bool = True
    batch_size: int = 500
    # The relay is woken by NOTIFY; this sweep only bounds the delay of a lost notification.
    sweep_seconds: float = 1.0
    # While a board's Redis Stream holds this many entries (consumers down or far behind), the
    # relay publishes nothing for it and events wait in the outbox; consumers trim what they
    # have acknowledged, so the stream never drops an event no consumer has applied.
    stream_max_length: int = 1_000_000
    # LISTEN for the commit notifications. Off behind a pooler that cannot LISTEN (PgBouncer in
    # transaction mode): the sweep alone then moves the outbox, sweep_seconds late at worst.
    listen: bool = True
    # A publish that takes longer is abandoned (its rows stay claimed only until the rollback),
    # so a hung Redis cannot hold outbox rows locked.
    publish_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class AnomalySettings:
    """Anomalies are flagged for admins in the score transaction; they never refuse a completion."""

    # Flag a user whose points from actions in one UTC day go above this (once per day).
    daily_point_cap: int = 5_000
    # Flag completions (of any actions) closer together than this many seconds; 0 turns it off.
    min_seconds_between_completions: float = 1.0


@dataclass(frozen=True)
class PurgeSettings:
    """The periodic purge of idempotency keys and spent tickets."""

    enabled: bool = True
    interval_seconds: float = 600.0
    # Idempotency keys are promised for at least 24 hours; they are removed after this many.
    idempotency_retention_hours: float = 48.0
    # Tickets are removed this long after they expired (used or not).
    ticket_retention_hours: float = 1.0
    # Rows deleted per statement, so a purge never holds many locks or one long transaction.
    batch_size: int = 5_000


@dataclass(frozen=True)
class GroupCommitSettings:
    # Completions written per transaction at most, and transactions in flight at once.
    max_group: int = 64
    concurrency: int = 4
    # Completions waiting for a transaction at most (all boards): past it a completion is
    # refused at once with UNAVAILABLE and a retry_after (an outage must not pile up work).
    queue_max: int = 4096
    # The deadline of a completion whose caller set none, in seconds: past it, a completion
    # still queued is dropped unwritten, and an outage answers UNAVAILABLE before it.
    default_deadline_seconds: float = 10.0


@dataclass(frozen=True)
class Settings(ServiceSettings):
    ticket_secret: bytes = field(repr=False)
    ticket_ttl_seconds: int = 600
    relay: RelaySettings = RelaySettings()
    anomalies: AnomalySettings = AnomalySettings()
    purge: PurgeSettings = PurgeSettings()
    group_commit: GroupCommitSettings = GroupCommitSettings()
    # The rank in a CompleteAction response is read from Redis within this time, else counted
    # in PostgreSQL (the read happens while the user's row is locked).
    rank_timeout_seconds: float = 1.0
    # Time PostgreSQL may spend counting ranks when Redis cannot answer (else rank 0: unknown).
    rank_fallback_seconds: float = 0.25
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        secret = env.required("TICKET_SECRET")
        if len(secret) < 32:
            raise ConfigError("SCOREBOARD_TICKET_SECRET must be at least 32 characters")
        return cls(
            **ServiceSettings.basics_from_env(env, "score", max_connections=16),
            ticket_secret=secret.encode(),
            ticket_ttl_seconds=env.integer("TICKET_TTL_SECONDS", 600, minimum=10),
            relay=RelaySettings(
                enabled=env.flag("RELAY_ENABLED", True),
                batch_size=env.integer("RELAY_BATCH_SIZE", 500, minimum=1),
                sweep_seconds=env.number("RELAY_SWEEP_SECONDS", 1.0, minimum=0.05),
                stream_max_length=env.integer("STREAM_MAX_LENGTH", 1_000_000, minimum=1000),
                listen=env.flag("RELAY_LISTEN", True),
                publish_timeout_seconds=env.number(
                    "RELAY_PUBLISH_TIMEOUT_SECONDS", 5.0, minimum=0.1
                ),
            ),
            anomalies=AnomalySettings(
                daily_point_cap=env.integer("ANOMALY_DAILY_POINT_CAP", 5_000, minimum=1),
                min_seconds_between_completions=env.number(
                    "ANOMALY_MIN_SECONDS_BETWEEN_COMPLETIONS", 1.0, minimum=0.0
                ),
            ),
            purge=PurgeSettings(
                enabled=env.flag("PURGE_ENABLED", True),
                interval_seconds=env.number("PURGE_INTERVAL_SECONDS", 600.0, minimum=1.0),
                idempotency_retention_hours=env.number(
                    "IDEMPOTENCY_RETENTION_HOURS", 48.0, minimum=24.0
                ),
                ticket_retention_hours=env.number("TICKET_RETENTION_HOURS", 1.0, minimum=0.0),
                batch_size=env.integer("PURGE_BATCH_SIZE", 5_000, minimum=1),
            ),
            group_commit=GroupCommitSettings(
                max_group=env.integer("GROUP_COMMIT_MAX", 64, minimum=1),
                concurrency=env.integer("GROUP_COMMIT_CONCURRENCY", 4, minimum=1),
                queue_max=env.integer("GROUP_COMMIT_QUEUE_MAX", 4096, minimum=1),
                default_deadline_seconds=env.number(
                    "GROUP_COMMIT_DEADLINE_SECONDS", 10.0, minimum=0.1
                ),
            ),
            rank_timeout_seconds=env.number("RANK_TIMEOUT_SECONDS", 1.0, minimum=0.01),
            rank_fallback_seconds=env.number("RANK_FALLBACK_SECONDS", 0.25, minimum=0.001),
            log_level=env.text("LOG_LEVEL", "INFO"),
        )
