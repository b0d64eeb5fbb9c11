"""score_service.anomalies, pure: which completions are flagged (crossing the daily point cap,
completions closer together than the minimum gap) and what each flag records."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from score_service.anomalies import (
    DAILY_POINT_CAP,
    FAST_COMPLETION,
    KINDS,
    Anomaly,
    Recent,
    detect,
)
from score_service.config import AnomalySettings

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TODAY = date(2026, 3, 1)
CAP = AnomalySettings(daily_point_cap=100, min_seconds_between_completions=0)
GAP = AnomalySettings(daily_point_cap=10**9, min_seconds_between_completions=2.0)


def _recent(**fields: Any) -> Recent:
    return Recent(now=NOW, today=TODAY, **fields)


def test_the_kinds_are_the_two_flags() -> None:
    assert KINDS == ("daily_point_cap", "fast_completion")
    assert (DAILY_POINT_CAP, FAST_COMPLETION) == KINDS


def test_a_quiet_completion_raises_nothing() -> None:
    assert detect(AnomalySettings(), _recent(), action_id="a", points=10) == []


def test_the_completion_that_crosses_the_cap_is_flagged_with_the_points_so_far() -> None:
    found = detect(CAP, _recent(points_today=95), action_id="win-match", points=25)
    assert found == [
        Anomaly(
            DAILY_POINT_CAP,
            {"day": "2026-03-01", "points_today": 120, "cap": 100, "action_id": "win-match"},
        )
    ]


def test_reaching_the_cap_exactly_is_not_crossing_it() -> None:
    assert detect(CAP, _recent(points_today=90), action_id="a", points=10) == []
    crossed = detect(CAP, _recent(points_today=100), action_id="a", points=1)
    assert [a.kind for a in crossed] == [DAILY_POINT_CAP]
    assert crossed[0].detail["points_today"] == 101


def test_the_cap_is_flagged_once_a_day_not_on_every_later_completion() -> None:
    assert detect(CAP, _recent(points_today=101), action_id="a", points=50) == []


def test_a_negative_completion_never_crosses_the_cap() -> None:
    assert detect(CAP, _recent(points_today=150), action_id="a", points=-10) == []


def test_completions_closer_than_the_minimum_gap_are_flagged() -> None:
    recent = _recent(last_any=NOW - timedelta(seconds=0.5), last_any_action="daily-login")
    assert detect(GAP, recent, action_id="win-match", points=5) == [
        Anomaly(
            FAST_COMPLETION,
            {
                "gap_seconds": 0.5,
                "min_seconds": 2.0,
                "action_id": "win-match",
                "previous_action_id": "daily-login",
            },
        )
    ]


def test_a_gap_of_exactly_the_minimum_is_not_flagged() -> None:
    recent = _recent(last_any=NOW - timedelta(seconds=2), last_any_action="a")
    assert detect(GAP, recent, action_id="a", points=5) == []


def test_the_gap_is_rounded_to_microseconds_and_never_negative() -> None:
    later = _recent(last_any=NOW + timedelta(seconds=3), last_any_action="a")
    [flag] = detect(GAP, later, action_id="a", points=1)
    assert flag.detail["gap_seconds"] == 0.0
    close = _recent(last_any=NOW - timedelta(microseconds=1234567))
    [flag] = detect(GAP, close, action_id="a", points=1)
    assert flag.detail["gap_seconds"] == 1.234567
    assert flag.detail["previous_action_id"] == ""  # the previous action is not known


def test_no_previous_completion_or_a_zero_minimum_turns_the_gap_check_off() -> None:
    assert detect(GAP, _recent(), action_id="a", points=1) == []
    off = AnomalySettings(daily_point_cap=10**9, min_seconds_between_completions=0)
    recent = _recent(last_any=NOW, last_any_action="a")
    assert detect(off, recent, action_id="a", points=1) == []


def test_both_flags_at_once_cap_first() -> None:
    both = AnomalySettings(daily_point_cap=10, min_seconds_between_completions=1.0)
    recent = _recent(points_today=5, last_any=NOW - timedelta(seconds=0.25), last_any_action="x")
    found = detect(both, recent, action_id="y", points=10)
    assert [a.kind for a in found] == [DAILY_POINT_CAP, FAST_COMPLETION]
    assert found[0].detail["points_today"] == 15
    assert found[1].detail["gap_seconds"] == 0.25


def test_an_anomaly_carries_no_detail_unless_given() -> None:
    assert Anomaly("burst").detail == {}
    assert Anomaly("burst").detail is not Anomaly("burst").detail
