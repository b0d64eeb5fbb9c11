"""Top-10 snapshots as leaderboard_service stores and publishes them -> protobuf. The JSON is
decoded by common/redis_values.py, the one owner of that format.

A snapshot names its board's period. The published JSON names it too ("period") once the write
path writes it; a payload without it belongs to the period the hub knows as current (the
`period` argument), which the hub learns from the board's PeriodClosed stream."""

from __future__ import annotations

from common.redis_values import MalformedValue, Top10, decode_top10
from common.timestamps import timestamp_pb_us
from scoreboard.leaderboard.v1 import leaderboard_pb2

Version = tuple[int, int]


def version(snapshot: leaderboard_pb2.Top10Snapshot) -> Version:
    """What orders snapshots of one board: a later period is newer whatever the sequences."""
    return (snapshot.period, snapshot.sequence)


def published_period(snapshot: Top10) -> int:
    """The period the JSON names; 0 when it names none (written before periods were named)."""
    period = getattr(snapshot, "period", 0)
    return period if isinstance(period, int) and period > 0 else 0


def from_json(
    board: str, payload: bytes | str, period: int = 1
) -> leaderboard_pb2.Top10Snapshot | None:
    """Parse a published snapshot (of `period` unless it names its own); None when it is
    malformed."""
    try:
        decoded = decode_top10(payload)
    except MalformedValue:
        return None
    return build(board, decoded, published_period(decoded) or period)


def build(board: str, snapshot: Top10, period: int = 1) -> leaderboard_pb2.Top10Snapshot:
    return leaderboard_pb2.Top10Snapshot(
        board_id=board,
        sequence=snapshot.seq,
        commit_time=timestamp_pb_us(snapshot.ts_us),
        period=period,
        entries=[
            leaderboard_pb2.LeaderboardEntry(
                rank=e.rank, user_id=e.user_id, username=e.username, score=e.score
            )
            for e in snapshot.entries
        ],
    )
