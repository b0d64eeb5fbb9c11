"""stream_service settings, read once at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.config import (
    DEFAULT_BOARD,
    DEFAULT_PORTS,
    ConfigError,
    Env,
    GrpcServerSettings,
    RedisSettings,
    VerifierSettings,
)

_TOPS = ("10", "100", "1000")
_BANDS = ("1", "5", "10", "25", "50")


@dataclass(frozen=True)
class RankSettings:
    """Limits of the personal live rank (WatchRank, DESIGN decision 12)."""

    # The board's ticker ranks the online rank subscribers this often (0: no ticker)...
    tick_seconds: float = 3.0
    # ...in chunks of this many users, one script call each, pipelined.
    tick_chunk: int = 500
    # At most one update per subscriber per this interval; later changes are coalesced into
    # the latest and sent when it has passed (the first change after a quiet interval goes out
    # at once).
    min_interval_seconds: float = 1.0
    # The ticker pushes a move of at least this share of the rank (0.01: 1 %), or a threshold.
    move_share: float = 0.01
    # Entering or leaving one of these tops is a threshold.
    tops: tuple[int, ...] = (10, 100, 1000)
    # Entering or leaving the top x % bands is a threshold (only with a percentile shown).
    percentile_bands: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0, 50.0)
    # The percentile is shown only on boards with at least this many ranked users.
    percentile_min_players: int = 100


@dataclass(frozen=True)
class Settings:
    grpc: GrpcServerSettings
    redis: RedisSettings
    verifier: VerifierSettings
    log_level: str = "INFO"
    # A quiet subscription is probed with PING this often; no reply within as long again means
    # the connection is dead (a vanished server does not always close it).
    subscription_probe_seconds: float = 15.0
    # Concurrent WatchTop10 streams per principal (per replica): a user's or a game server's...
    watch_top10_per_principal: int = 5
    # ...and a service identity's, higher: every edge process holds one stream with the edge's.
    watch_top10_per_service: int = 1000
    rank: RankSettings = field(default_factory=RankSettings)
    # Boards whose snapshot hub runs for the life of the process (the first is the default);
    # any other board's hub runs while it has watchers, and stops after this long without.
    boards: tuple[str, ...] = (DEFAULT_BOARD,)
    board_idle_seconds: float = 60.0
    # At most this many boards streamed at once by one replica.
    max_boards: int = 1000

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        return cls(
            grpc=GrpcServerSettings.from_env(env, default_port=DEFAULT_PORTS["stream"]),
            redis=RedisSettings.from_env(env),
            verifier=VerifierSettings.from_env(env),
            log_level=env.text("LOG_LEVEL", "INFO"),
            subscription_probe_seconds=env.number("STREAM_PROBE_SECONDS", 15.0, minimum=0.1),
            watch_top10_per_principal=env.integer("WATCH_TOP10_PER_PRINCIPAL", 5, minimum=1),
            watch_top10_per_service=env.integer("WATCH_TOP10_PER_SERVICE", 1000, minimum=1),
            boards=tuple(dict.fromkeys(env.items("BOARDS", (DEFAULT_BOARD,)))),
            board_idle_seconds=env.number("STREAM_BOARD_IDLE_SECONDS", 60.0, minimum=0.1),
            max_boards=env.integer("STREAM_MAX_BOARDS", 1000, minimum=1),
            rank=RankSettings(
                tick_seconds=env.number("RANK_TICK_SECONDS", 3.0, minimum=0.0),
                tick_chunk=env.integer("RANK_TICK_CHUNK", 500, minimum=1),
                min_interval_seconds=env.number("RANK_MIN_INTERVAL_SECONDS", 1.0, minimum=0.0),
                move_share=env.number("RANK_MOVE_SHARE", 0.01, minimum=0.0),
                tops=tuple(sorted({int(n) for n in _numbers(env, "RANK_TOPS", _TOPS)})),
                percentile_bands=tuple(sorted(_numbers(env, "RANK_PERCENTILE_BANDS", _BANDS))),
                percentile_min_players=env.integer("PERCENTILE_MIN_PLAYERS", 100, minimum=0),
            ),
        )


def _numbers(env: Env, name: str, default: tuple[str, ...]) -> list[float]:
    values: list[float] = []
    for item in env.items(name, default):
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"SCOREBOARD_{name} must list numbers, got {item!r}") from None
        if value <= 0:
            raise ConfigError(f"SCOREBOARD_{name} must list positive numbers, got {item!r}")
        values.append(value)
    return values
