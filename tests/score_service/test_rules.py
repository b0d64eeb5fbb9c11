"""Unit tests of the pure logic: points, the rules, anomaly detection, ticket signatures and the
validation of admin definitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from common.errors import Reason, ServiceError
from score_service.anomalies import DAILY_POINT_CAP, FAST_COMPLETION, Recent, detect
from score_service.catalog import CatalogAction, from_pb
from score_service.config import AnomalySettings
from score_service.rules import check_completion
from score_service.tickets import TicketSigner
from scoreboard.score.v1 import score_service_pb2 as pb

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _action(**changes: object) -> CatalogAction:
    values: dict[str, object] = {
        "action_id": "a",
        "board_id": "default",
        "name": "A",
        "description": "",
        "base_points": 10,
        "difficulty_multiplier": Decimal("1.000"),
        "daily_limit": 1,
        "cooldown_seconds": 0,
        "requires_ticket": False,
        "min_duration_seconds": 0,
        "active": True,
    }
    values.update(changes)
    return CatalogAction(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("base", "multiplier", "points"),
    [(10, "1.000", 10), (7, "1.500", 11), (5, "1.100", 6), (3, "0.500", 2), (0, "2.000", 0)],
)
def test_points_are_base_times_difficulty_rounded_half_up(
    base: int, multiplier: str, points: int
) -> None:
    assert _action(base_points=base, difficulty_multiplier=Decimal(multiplier)).points == points


def _reason(call: object) -> str:
    assert callable(call)
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value.reason


def test_rules_give_the_slot_or_a_distinct_reason() -> None:
    limited = _action(daily_limit=3, cooldown_seconds=60)
    assert check_completion(limited, today_count=0, last_completed=None, now=NOW) == 1
    assert (
        check_completion(limited, today_count=2, last_completed=NOW - timedelta(minutes=2), now=NOW)
        == 3
    )
    assert (
        _reason(lambda: check_completion(limited, today_count=3, last_completed=None, now=NOW))
        == Reason.DAILY_LIMIT_REACHED
    )
    cooling = lambda: check_completion(  # noqa: E731
        limited, today_count=1, last_completed=NOW - timedelta(seconds=59), now=NOW
    )
    assert _reason(cooling) == Reason.COOLDOWN_ACTIVE
    inactive = _action(active=False)
    assert (
        _reason(lambda: check_completion(inactive, today_count=0, last_completed=None, now=NOW))
        == Reason.ACTION_INACTIVE
    )


def test_cooldown_wait_is_rounded_up_to_whole_seconds() -> None:
    action = _action(daily_limit=5, cooldown_seconds=10)
    with pytest.raises(ServiceError) as caught:
        check_completion(
            action, today_count=1, last_completed=NOW - timedelta(seconds=8.5), now=NOW
        )
    assert caught.value.metadata == {"retry_after": "2"}


def test_anomalies_flag_the_cap_crossing_once_and_fast_completions() -> None:
    settings = AnomalySettings(daily_point_cap=100, min_seconds_between_completions=1.0)
    today = date(2026, 11, 27)
    quiet = Recent(now=NOW, today=today, points_today=50, last_any=NOW - timedelta(seconds=5))
    assert detect(settings, quiet, action_id="a", points=50) == []
    crossing = detect(settings, quiet, action_id="a", points=51)
    assert [a.kind for a in crossing] == [DAILY_POINT_CAP]
    assert crossing[0].detail["points_today"] == 101
    already_over = Recent(now=NOW, today=today, points_today=150)
    assert detect(settings, already_over, action_id="a", points=10) == []
    fast = Recent(
        now=NOW,
        today=today,
        last_any=NOW - timedelta(milliseconds=300),
        last_any_action="b",
    )
    [flag] = detect(settings, fast, action_id="a", points=1)
    assert flag.kind == FAST_COMPLETION
    assert flag.detail["previous_action_id"] == "b"
    assert flag.detail["gap_seconds"] == pytest.approx(0.3)
    off = AnomalySettings(daily_point_cap=100, min_seconds_between_completions=0)
    assert detect(off, fast, action_id="a", points=1) == []


def test_ticket_signatures() -> None:
    signer = TicketSigner(b"k" * 32)
    ticket = signer.sign("6f1c2a3e-0000-4000-8000-000000000001")
    assert signer.open(ticket) == "6f1c2a3e-0000-4000-8000-000000000001"
    other = TicketSigner(b"j" * 32)
    for bad in (
        other.sign("6f1c2a3e-0000-4000-8000-000000000001"),
        ticket[:-1] + ("0" if ticket[-1] != "0" else "1"),
        "6f1c2a3e-0000-4000-8000-000000000001",
        "",
        signer.sign("not-a-uuid"),
    ):
        assert _reason(lambda bad=bad: signer.open(bad)) == Reason.TICKET_INVALID


def test_admin_definitions_are_validated() -> None:
    good = pb.Action(
        action_id="new-one",
        name=" New ",
        base_points=5,
        difficulty_multiplier=1.2345,
        daily_limit=2,
        cooldown=Duration(seconds=5),
        active=True,
    )
    parsed = from_pb(good, "default")
    assert (parsed.name, parsed.difficulty_multiplier, parsed.points) == (
        "New",
        Decimal("1.235"),
        6,
    )
    bad_cases: list[dict[str, Any]] = [
        {"action_id": "Bad Id"},
        {"name": ""},
        {"base_points": -1},
        {"base_points": 1_000_001},
        {"difficulty_multiplier": 101},
        {"difficulty_multiplier": -1},
        {"difficulty_multiplier": float("nan")},
        {"difficulty_multiplier": float("inf")},
        {"daily_limit": -3},
        {"cooldown": Duration(seconds=86401)},
        {"min_duration": Duration(seconds=-1)},
        {"description": "x" * 501},
    ]
    for changes in bad_cases:
        action = pb.Action()
        action.CopyFrom(good)
        for field, value in changes.items():
            if isinstance(value, Duration):
                getattr(action, field).CopyFrom(value)
            else:
                setattr(action, field, value)
        assert _reason(lambda action=action: from_pb(action, "default")) == Reason.INVALID_ARGUMENT
