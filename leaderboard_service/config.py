"""leaderboard_service settings, read once at start."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from common.config import (
    DEFAULT_PORTS,
    DatabaseSettings,
    Env,
    GrpcServerSettings,
    RedisSettings,
    VerifierSettings,
)


@dataclass(frozen=True)
class ConsumerSettings:
    enabled: bool = True
    group: str = "leaderboard"
    # Unique per replica; pending entries of a dead one are claimed by the others.
    name: str = "consumer"
    batch_size: int = 500
    block_ms: int = 1000
    # Entries pending longer than this on another consumer are claimed (XAUTOCLAIM).
    claim_idle_ms: int = 30_000
    # An entry delivered this many times without success goes to the dead-letter stream.
    max_deliveries: int = 5
    # How often the ranking is compared with PostgreSQL (count check; 0 disables).
    check_seconds: float = 60.0


@dataclass(frozen=True)
class Settings:
    grpc: GrpcServerSettings
    database: DatabaseSettings
    redis: RedisSettings
    verifier: VerifierSettings
    consumer: ConsumerSettings = ConsumerSettings()
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        default_name = f"{socket.gethostname()}-{os.getpid()}"
        return cls(
            grpc=GrpcServerSettings.from_env(env, default_port=DEFAULT_PORTS["leaderboard"]),
            database=DatabaseSettings.from_env(env, max_default=8),
            redis=RedisSettings.from_env(env),
            verifier=VerifierSettings.from_env(env),
            consumer=ConsumerSettings(
                enabled=env.flag("CONSUMER_ENABLED", True),
                group=env.text("CONSUMER_GROUP", "leaderboard"),
                name=env.text("CONSUMER_NAME", default_name),
                batch_size=env.integer("CONSUMER_BATCH_SIZE", 500, minimum=1),
                block_ms=env.integer("CONSUMER_BLOCK_MS", 1000, minimum=1),
                claim_idle_ms=env.integer("CONSUMER_CLAIM_IDLE_MS", 30_000, minimum=100),
                max_deliveries=env.integer("CONSUMER_MAX_DELIVERIES", 5, minimum=1),
                check_seconds=env.number("RANKING_CHECK_SECONDS", 60.0, minimum=0.0),
            ),
            log_level=env.text("LOG_LEVEL", "INFO"),
        )
