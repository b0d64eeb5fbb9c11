"""ScoreUpdated events as the apply script takes them (pure conversion)."""

from __future__ import annotations

from scoreboard.events.v1 import events_pb2

REACHED_DIGITS = 17


def micros(seconds: int, nanos: int) -> int:
    return seconds * 1_000_000 + nanos // 1000


def reached_key(reached_us: int) -> str:
    """Fixed-width time, so members of equal score sort by the time the score was reached."""
    return f"{reached_us:0{REACHED_DIGITS}d}"


def script_args(event: events_pb2.ScoreUpdated) -> list[str]:
    """user, version, -total, reached (17 digits), excluded, name, commit µs."""
    reached = micros(event.reached_time.seconds, event.reached_time.nanos)
    commit = micros(event.commit_time.seconds, event.commit_time.nanos)
    return [
        event.user_id,
        str(event.version),
        str(-event.total),
        reached_key(reached),
        "1" if event.excluded else "0",
        event.display_name,
        str(commit),
    ]


def parse(payload: bytes) -> events_pb2.ScoreUpdated | None:
    """The event, or None when the payload is not a usable ScoreUpdated."""
    try:
        event = events_pb2.ScoreUpdated.FromString(payload)
    except Exception:  # protobuf raises DecodeError, or others from upb
        return None
    if not event.user_id or event.version <= 0 or not event.board_id:
        return None
    if "|" in event.user_id or ":" in event.user_id:
        return None
    return event
