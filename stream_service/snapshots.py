"""Top-10 snapshots as leaderboard_service stores and publishes them -> protobuf. The JSON is
decoded by common/redis_values.py, the one owner of that format."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from common.redis_values import MalformedValue, Top10, decode_top10
from scoreboard.leaderboard.v1 import leaderboard_pb2


def from_json(board: str, payload: bytes | str) -> leaderboard_pb2.Top10Snapshot | None:
    """Parse a published snapshot; None when it is malformed."""
    try:
        return build(board, decode_top10(payload))
    except MalformedValue:
        return None


def build(board: str, snapshot: Top10) -> leaderboard_pb2.Top10Snapshot:
    commit = Timestamp()
    commit.FromMicroseconds(snapshot.ts_us)
    return leaderboard_pb2.Top10Snapshot(
        board_id=board,
        sequence=snapshot.seq,
        commit_time=commit,
        entries=[
            leaderboard_pb2.LeaderboardEntry(
                rank=e.rank, user_id=e.user_id, username=e.username, score=e.score
            )
            for e in snapshot.entries
        ],
    )
