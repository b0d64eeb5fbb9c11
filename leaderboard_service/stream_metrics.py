"""The event stream's health as gauges, per board: entries not yet delivered to the consumer
group (lag) and how old the oldest of them is, entries delivered but not acknowledged (pending),
and the dead-letter stream's length (it only shrinks when an operator deals with it)."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import ResponseError

from common.redis_keys import BoardKeys
from leaderboard_service.scripts import text

LAG = Gauge(
    "scoreboard_stream_lag_entries", "Stream entries not yet delivered to the group.", ["board"]
)
LAG_SECONDS = Gauge(
    "scoreboard_stream_lag_seconds",
    "Age of the oldest stream entry not yet delivered to the group (0 when none).",
    ["board"],
)
PENDING = Gauge(
    "scoreboard_stream_pending_entries",
    "Entries delivered to a consumer and not yet acknowledged.",
    ["board"],
)
DEAD = Gauge("scoreboard_dead_letter_entries", "Entries in the dead-letter stream.", ["board"])
# Undelivered entries are counted by hand up to this many; beyond it Redis's own figure is used.
COUNT_CAP = 10_000


async def undelivered(
    redis: aioredis.Redis, stream: str, group: dict[str, Any]
) -> tuple[int, int | None]:
    """Entries of `stream` not yet delivered to `group` (an XINFO GROUPS entry), and the time
    (ms) of the oldest of them. Redis's own `lag` is not trusted alone: it derives from the
    group's read counter, which Redis cannot always keep (it showed 400,000 entries of lag for a
    group that had read to the stream's end), and a false lag pages someone. So: none when no
    entry follows the last delivered one, an exact count up to COUNT_CAP, Redis's figure above."""
    last = text(group.get("last-delivered-id", "0-0"))
    entries: list[Any] = await redis.xrange(stream, f"({last}", "+", count=COUNT_CAP) or []
    if not entries:
        return 0, None
    oldest_ms = int(text(entries[0][0]).split("-", 1)[0])
    if len(entries) < COUNT_CAP:
        return len(entries), oldest_ms
    reported = group.get("lag")
    return max(COUNT_CAP, int(reported) if reported is not None else 0), oldest_ms


async def sample_stream(redis: aioredis.Redis, keys: BoardKeys, group: str) -> None:
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(keys.events)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        groups = []  # no event yet (or Redis was wiped): nothing waits
    mine = next((g for g in groups if text(g.get("name")) == group), None)
    if mine is None:
        return  # the consumer creates the group
    lag, oldest_ms = await undelivered(redis, keys.events, mine)
    LAG.labels(keys.board).set(lag)
    LAG_SECONDS.labels(keys.board).set(
        max(0.0, time.time() - oldest_ms / 1000) if oldest_ms is not None else 0.0
    )
    PENDING.labels(keys.board).set(int(mine.get("pending", 0)))
    DEAD.labels(keys.board).set(int(await redis.xlen(keys.dead_letters)))
