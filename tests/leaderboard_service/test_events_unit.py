"""leaderboard_service.events, pure: the arguments the apply script gets for a ScoreUpdated, and
every reason an event is refused before it reaches Redis."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from leaderboard_service.events import (
    MAX_EXACT,
    MAX_NAME,
    canonical_user_id,
    micros,
    parse,
    problem,
    script_args,
)
from scoreboard.events.v1 import events_pb2

USER = "0b8e5f8e-6a3c-4d1e-9f00-1234567890ab"


def _event(**overrides: Any) -> events_pb2.ScoreUpdated:
    fields: dict[str, Any] = {
        "event_id": f"default:{USER}:3",
        "board_id": "default",
        "user_id": USER,
        "display_name": "Ada",
        "total": 120,
        "increment": 20,
        "version": 3,
        "reached_time": Timestamp(seconds=1_767_225_600, nanos=123_456_789),
        "commit_time": Timestamp(seconds=1_767_225_601, nanos=999),
    }
    fields.update(overrides)
    return events_pb2.ScoreUpdated(**fields)


def test_micros_truncates_nanoseconds() -> None:
    assert micros(0, 0) == 0
    assert micros(1, 999) == 1_000_000
    assert micros(1_767_225_600, 123_456_789) == 1_767_225_600_123_456


def test_script_args_in_the_order_apply_lua_reads_them() -> None:
    assert script_args(_event()) == [
        USER,
        "3",
        "-120",  # ranking score: the total negated
        "01767225600123456",  # reached µs, 17 digits
        "0",
        "Ada",
        "1767225601000000",  # commit µs
    ]


def test_script_args_of_an_excluded_user_with_a_negative_total() -> None:
    args = script_args(_event(excluded=True, total=-5, display_name=""))
    assert args[2] == "5"
    assert args[4] == "1"
    assert args[5] == ""


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (USER, True),
        (USER.upper(), False),
        (USER.replace("-", ""), False),
        ("{" + USER + "}", False),
        ("not-a-user", False),
        ("", False),
    ],
)
def test_canonical_user_id_is_postgres_text_form(value: str, canonical: bool) -> None:
    assert canonical_user_id(value) is canonical


def test_a_good_event_has_no_problem() -> None:
    assert problem(_event(), "default") is None
    assert problem(_event(display_name="x" * MAX_NAME), "default") is None
    assert problem(_event(version=MAX_EXACT - 1, total=MAX_EXACT - 1), "default") is None
    assert problem(_event(total=-(MAX_EXACT - 1)), "default") is None
    assert problem(_event(commit_time=Timestamp()), "default") is None  # commit may be 0


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"board_id": "weekly"}, "event for board 'weekly' on the stream of 'default'"),
        ({"user_id": USER.upper()}, "user_id is not a user id"),
        ({"version": 0}, "version out of range"),
        ({"version": -1}, "version out of range"),
        ({"version": MAX_EXACT}, "version out of range"),
        ({"total": MAX_EXACT}, "total out of range"),
        ({"total": -MAX_EXACT}, "total out of range"),
        ({"reached_time": Timestamp()}, "reached_time or commit_time out of range"),
        (
            {"reached_time": Timestamp(seconds=100_000_000_000)},
            "reached_time or commit_time out of range",
        ),
        (
            {"commit_time": Timestamp(seconds=-1)},
            "reached_time or commit_time out of range",
        ),
        ({"display_name": "x" * (MAX_NAME + 1)}, "display_name too long"),
    ],
)
def test_each_problem_is_named(overrides: dict[str, Any], why: str) -> None:
    assert problem(_event(**overrides), "default") == why


def test_the_board_is_checked_first() -> None:
    assert problem(_event(board_id="x", version=0), "default") == (
        "event for board 'x' on the stream of 'default'"
    )


def test_parse_returns_the_event_or_why_not() -> None:
    event = _event()
    parsed, why = parse(event.SerializeToString(), "default")
    assert (parsed, why) == (event, "")
    assert parse(event.SerializeToString(), "weekly") == (
        None,
        "event for board 'default' on the stream of 'weekly'",
    )
    assert parse(b"\xff\xff\xff", "default") == (None, "not a ScoreUpdated protobuf")
    # An empty payload decodes to an empty message, which is refused for its board.
    assert parse(b"", "default") == (None, "event for board '' on the stream of 'default'")
