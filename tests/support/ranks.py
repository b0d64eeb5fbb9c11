"""Players placed straight into a board's ranking, the way a repair writes them: through the
apply script without the rank channel, so no rank move is published (what only the personal-rank
ticker can find)."""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from common.redis_keys import BoardKeys
from leaderboard_service.events import script_args
from leaderboard_service.scripts import Scripts
from scoreboard.events.v1 import events_pb2


def _stamp(us: int) -> Timestamp:
    value = Timestamp()
    value.FromMicroseconds(us)
    return value


async def place_players(
    redis: aioredis.Redis, keys: BoardKeys, scores: list[int], *, name: str = "ghost"
) -> list[str]:
    """New users with these totals (version 1, excluded from nothing); returns their ids."""
    now = time.time_ns() // 1000
    users = [str(uuid.uuid4()) for _ in scores]
    events = [
        script_args(
            events_pb2.ScoreUpdated(
                board_id=keys.board,
                user_id=user,
                display_name=f"{name} {index}",
                total=total,
                version=1,
                reached_time=_stamp(now + index),
                commit_time=_stamp(now + index),
            )
        )
        for index, (user, total) in enumerate(zip(users, scores, strict=True))
    ]
    await Scripts(redis).apply_events(keys, events, now_us=now, rank_moves=False)
    return users
