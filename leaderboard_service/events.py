"""ScoreUpdated events as the apply script takes them (pure conversion and validation)."""

from __future__ import annotations

import uuid

from common.redis_values import REACHED_DIGITS, ranking_score, reached_key
from scoreboard.events.v1 import events_pb2

# Sorted-set scores are doubles: integers are exact up to 2^53.
MAX_EXACT = 2**53
MAX_NAME = 200


def micros(seconds: int, nanos: int) -> int:
    return seconds * 1_000_000 + nanos // 1000


def script_args(event: events_pb2.ScoreUpdated, asc: bool = False) -> list[str]:
    """user, version, ZSET score, reached (17 digits), excluded, name, commit µs (the values
    apply.lua stores are encoded as common/redis_values.py describes)."""
    reached = micros(event.reached_time.seconds, event.reached_time.nanos)
    commit = micros(event.commit_time.seconds, event.commit_time.nanos)
    return [
        event.user_id,
        str(event.version),
        str(ranking_score(event.total, asc)),
        reached_key(reached),
        "1" if event.excluded else "0",
        event.display_name,
        str(commit),
    ]


def canonical_user_id(value: str) -> bool:
    """True for a user id as PostgreSQL prints a uuid (lower case, with hyphens)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def problem(event: events_pb2.ScoreUpdated, board: str) -> str | None:
    """Why the event cannot be applied to `board`, or None when it can."""
    if event.board_id != board:
        return f"event for board {event.board_id!r} on the stream of {board!r}"
    if not canonical_user_id(event.user_id):
        return "user_id is not a user id"
    if not 0 < event.version < MAX_EXACT:
        return "version out of range"
    if not -MAX_EXACT < event.total < MAX_EXACT:
        return "total out of range"
    reached = micros(event.reached_time.seconds, event.reached_time.nanos)
    commit = micros(event.commit_time.seconds, event.commit_time.nanos)
    if not 0 < reached < 10**REACHED_DIGITS or not 0 <= commit < 10**REACHED_DIGITS:
        return "reached_time or commit_time out of range"
    if len(event.display_name) > MAX_NAME:
        return "display_name too long"
    return None


def parse(payload: bytes, board: str) -> tuple[events_pb2.ScoreUpdated | None, str]:
    """The event, or None and why it is not a usable ScoreUpdated for `board`."""
    try:
        event = events_pb2.ScoreUpdated.FromString(payload)
    except Exception:  # protobuf raises DecodeError, or others from upb
        return None, "not a ScoreUpdated protobuf"
    why = problem(event, board)
    if why is not None:
        return None, why
    return event, ""
