"""Top-10 snapshots as leaderboard_service stores and publishes them (JSON) -> protobuf."""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from scoreboard.leaderboard.v1 import leaderboard_pb2


def from_json(board: str, payload: bytes | str) -> leaderboard_pb2.Top10Snapshot | None:
    """Parse a published snapshot; None when it is malformed."""
    try:
        data = orjson.loads(payload)
        return build(board, int(data["seq"]), int(data["ts"]), data["entries"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def build(board: str, seq: int, ts_us: int, entries: Any) -> leaderboard_pb2.Top10Snapshot:
    commit = Timestamp()
    commit.FromMicroseconds(ts_us)
    rows = [] if isinstance(entries, dict) else entries  # Lua's cjson writes [] as {}
    return leaderboard_pb2.Top10Snapshot(
        board_id=board,
        sequence=seq,
        commit_time=commit,
        entries=[
            leaderboard_pb2.LeaderboardEntry(
                rank=int(rank), user_id=str(user), username=str(name), score=int(score)
            )
            for rank, user, name, score in rows
        ],
    )
