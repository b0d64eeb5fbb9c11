"""leaderboard_service settings, read once at start."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from common.boards import Clock, system_clock
from common.config import (
    DEFAULT_BOARD,
    ConfigError,
    Env,
    ServiceSettings,
)

# Awaited with the entry ids of each apply script call just before it runs (tests only).
ApplyHook = Callable[[list[str]], Awaitable[None]]
# Awaited with (board, period) between a period's freeze and its event (tests only).
CloseHook = Callable[[str, int], Awaitable[None]]
MAX_BATCH = 10_000
_BOARD_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


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
    # An entry delivered more than this many times without success goes to the dead letters.
    max_deliveries: int = 5
    # How often the ranking is compared with PostgreSQL (cheap checks; 0 disables).
    check_seconds: float = 60.0
    # Events committed this recently may still be on their way to Redis: the check compares
    # versions only for users whose score changed before now minus this (and never repairs
    # anything newer). Above the consumer's usual lag and Redis's replication lag.
    check_grace_seconds: float = 5.0
    # How often entries every group has acknowledged are trimmed from the stream (0: never).
    trim_seconds: float = 60.0


@dataclass(frozen=True)
class Settings(ServiceSettings):
    consumer: ConsumerSettings = ConsumerSettings()
    # Boards this service ranks; the first is the one a request without board_id means.
    boards: tuple[str, ...] = (DEFAULT_BOARD,)
    log_level: str = "INFO"
    # A user's percentile ("top x %") is given only on boards with at least this many ranked
    # users (0: always).
    percentile_min_players: int = 100
    # How many of the users a mover passed its rank move names (they get "overtaken").
    rank_max_passed: int = 5
    # The period scheduler (DESIGN decision 11): how often it looks at every board (it also
    # wakes at the nearest end of a period), and how long a closed period's Redis keys stay.
    periods_enabled: bool = True
    period_check_seconds: float = 5.0
    period_key_grace_seconds: float = 3600.0
    # Test hooks, never read from the environment.
    before_apply: ApplyHook | None = field(default=None, repr=False, compare=False)
    before_period_event: CloseHook | None = field(default=None, repr=False, compare=False)
    # The clock periods are read with (tests move it across a reset).
    clock: Clock = field(default=system_clock, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        default_name = f"{socket.gethostname()}-{os.getpid()}"
        boards = env.items("BOARDS", (DEFAULT_BOARD,))
        bad = [b for b in boards if not _BOARD_ID.match(b)]
        if bad or not boards:
            raise ConfigError(f"SCOREBOARD_BOARDS holds invalid board ids: {bad}")
        batch_size = env.integer("CONSUMER_BATCH_SIZE", 500, minimum=1)
        if batch_size > MAX_BATCH:
            raise ConfigError(f"SCOREBOARD_CONSUMER_BATCH_SIZE must be at most {MAX_BATCH}")
        return cls(
            **ServiceSettings.basics_from_env(env, "leaderboard", max_connections=8),
            consumer=ConsumerSettings(
                enabled=env.flag("CONSUMER_ENABLED", True),
                group=env.text("CONSUMER_GROUP", "leaderboard"),
                name=env.text("CONSUMER_NAME", default_name),
                batch_size=batch_size,
                block_ms=env.integer("CONSUMER_BLOCK_MS", 1000, minimum=1),
                claim_idle_ms=env.integer("CONSUMER_CLAIM_IDLE_MS", 30_000, minimum=100),
                max_deliveries=env.integer("CONSUMER_MAX_DELIVERIES", 5, minimum=1),
                check_seconds=env.number("RANKING_CHECK_SECONDS", 60.0, minimum=0.0),
                check_grace_seconds=env.number("RANKING_CHECK_GRACE_SECONDS", 5.0, minimum=0.0),
                trim_seconds=env.number("CONSUMER_TRIM_SECONDS", 60.0, minimum=0.0),
            ),
            boards=tuple(dict.fromkeys(boards)),
            log_level=env.text("LOG_LEVEL", "INFO"),
            percentile_min_players=env.integer("PERCENTILE_MIN_PLAYERS", 100, minimum=0),
            rank_max_passed=env.integer("RANK_MAX_PASSED", 5, minimum=0),
            periods_enabled=env.flag("PERIODS_ENABLED", True),
            period_check_seconds=env.number("PERIOD_CHECK_SECONDS", 5.0, minimum=0.05),
            period_key_grace_seconds=env.number("PERIOD_KEY_GRACE_SECONDS", 3600.0, minimum=1.0),
        )
