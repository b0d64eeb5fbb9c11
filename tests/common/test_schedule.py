"""Reset schedules: cron in an IANA zone, exact across DST (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.boards import Board, BoardError
from common.schedule import Schedule, ScheduleError


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_weekly_monday_midnight_in_the_players_zone() -> None:
    weekly = Schedule.parse("0 0 * * 1", "Europe/Berlin")
    # Monday 2024-06-03 00:00 CEST is Sunday 22:00 UTC.
    assert weekly.next_after(_utc(2024, 5, 30, 12)) == _utc(2024, 6, 2, 22)
    assert weekly.next_after(_utc(2024, 6, 2, 22)) == _utc(2024, 6, 9, 22)
    # Across the change to winter time the local midnight moves by an hour in UTC.
    assert weekly.next_after(_utc(2024, 10, 25)) == _utc(2024, 10, 27, 23)


def test_a_local_time_that_does_not_exist_rolls_forward() -> None:
    # 2024-03-31 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 never happens.
    daily = Schedule.parse("30 2 * * *", "Europe/Berlin")
    assert daily.next_after(_utc(2024, 3, 30, 12)) == _utc(2024, 3, 31, 1)
    # The next day it is an ordinary 02:30 CEST again.
    assert daily.next_after(_utc(2024, 3, 31, 1)) == _utc(2024, 4, 1, 0, 30)
    # New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    ny = Schedule.parse("15 2 10 3 *", "America/New_York")
    assert ny.next_after(_utc(2024, 3, 1)) == _utc(2024, 3, 10, 7)


def test_an_ambiguous_local_time_takes_its_first_occurrence_once() -> None:
    # 2024-10-27 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice, at 00:30
    # and 01:30 UTC. The schedule fires at the first and not at the second.
    daily = Schedule.parse("30 2 * * *", "Europe/Berlin")
    assert daily.next_after(_utc(2024, 10, 26, 12)) == _utc(2024, 10, 27, 0, 30)
    assert daily.next_after(_utc(2024, 10, 27, 0, 30)) == _utc(2024, 10, 28, 1, 30)


def test_hourly_across_both_changes_fires_once_per_existing_hour() -> None:
    hourly = Schedule.parse("0 * * * *", "Europe/Berlin")
    fired, t = [], _utc(2024, 3, 30, 23, 30)
    for _ in range(3):
        t = hourly.next_after(t)
        fired.append(t)
    # 01:00 CET, then 02:00 (nonexistent, rolled to 03:00 CEST) and 03:00 are one instant.
    assert fired == [_utc(2024, 3, 31, 0), _utc(2024, 3, 31, 1), _utc(2024, 3, 31, 2)]
    # From 01:30 CEST: 02:00 CEST (first occurrence), then 03:00 and 04:00 CET; 02:00 CET,
    # the repeated hour, does not fire again.
    t, fired = _utc(2024, 10, 26, 23, 30), []
    for _ in range(3):
        t = hourly.next_after(t)
        fired.append(t)
    assert fired == [_utc(2024, 10, 27, 0), _utc(2024, 10, 27, 2), _utc(2024, 10, 27, 3)]


def test_fields_lists_ranges_steps_names_and_either_day() -> None:
    s = Schedule.parse("*/20 9-10 * jan mon,fri", "UTC")
    assert s.next_after(_utc(2024, 1, 1, 10, 40)) == _utc(2024, 1, 5, 9)
    # Day of month or day of week when both are restricted (Vixie cron).
    either = Schedule.parse("0 0 13 * fri", "UTC")
    assert either.next_after(_utc(2024, 9, 1)) == _utc(2024, 9, 6)
    assert either.next_after(_utc(2024, 9, 7)) == _utc(2024, 9, 13)
    assert Schedule.parse("0 0 * * 7", "UTC").next_after(_utc(2024, 9, 2)) == _utc(2024, 9, 8)


@pytest.mark.parametrize(
    ("expression", "zone"),
    [
        ("0 0 * *", "UTC"),
        ("60 0 * * *", "UTC"),
        ("0 0 30 2 *", "UTC"),
        ("5-1 * * * *", "UTC"),
        ("*/0 * * * *", "UTC"),
        ("0 0 * * *", "Mars/Olympus"),
    ],
)
def test_bad_schedules_are_refused(expression: str, zone: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(expression, zone)


def test_board_periods_follow_the_schedule_and_stop_at_the_season_end() -> None:
    board = Board(
        "weekly",
        "Weekly",
        reset_cron="0 0 * * 1",
        time_zone="Europe/Berlin",
        season_end=_utc(2024, 6, 5),
    ).validated()
    assert board.period_end(_utc(2024, 5, 30)) == _utc(2024, 6, 2, 22)
    assert board.period_end(_utc(2024, 6, 2, 22)) == _utc(2024, 6, 5)
    assert Board("all", "All time").period_end(_utc(2024, 1, 1)) is None
    with pytest.raises(BoardError):
        Board("x", "X", reset_cron="bad").validated()
    with pytest.raises(BoardError):
        Board("x", "X", time_zone="Nowhere/Land").validated()
