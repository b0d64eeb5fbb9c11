"""Boards and their periods (DESIGN decision 11): the definition every service reads, the
period arithmetic, and the SQL that finds the period a write belongs to.

A board's periods follow one another without gaps: period 1 starts when the board (or its
season) starts; each period ends at the first firing of the schedule after it started, or at
the season's end, whichever is first; a board without a schedule has one period that ends only
with the season (or never). The period a score belongs to is the one open at the server's clock
when it is written. Clocks are callables handed down from configuration (tests move them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from common.schedule import Schedule, ScheduleError, parse_zone
from common.tiers import Tier, TierError
from common.tiers import validated as validated_tiers

__all__ = [
    "BOARD_COLUMNS",
    "COMBINES",
    "CURRENT_PERIOD_SQL",
    "SORT_ORDERS",
    "Board",
    "BoardError",
    "Clock",
    "Period",
    "board_from_row",
    "period_from_row",
    "system_clock",
]

Clock = Callable[[], datetime]
SortOrder = Literal["desc", "asc"]
Combine = Literal["sum", "best", "latest"]
SORT_ORDERS: tuple[SortOrder, ...] = ("desc", "asc")
COMBINES: tuple[Combine, ...] = ("sum", "best", "latest")
BOARD_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

BOARD_COLUMNS = (
    "id, name, sort_order, combine, reset_cron, time_zone, season_start, season_end,"
    " keep_periods, min_value, max_value"
)
PERIOD_COLUMNS = "board_id, period, starts_at, ends_at, closed_at, entries"

# The period a write made at %(at)s belongs to, locked FOR SHARE until the writer commits: a
# closing period is locked FOR UPDATE by the transaction that freezes it, so a write into it
# either commits before the freeze reads the scores or, once the freeze committed, skips the
# closed row and takes the next period (whose row always exists before the current one ends).
CURRENT_PERIOD_SQL = (
    "SELECT period FROM board_periods WHERE board_id = %(board)s AND closed_at IS NULL"
    " AND starts_at <= %(at)s AND (ends_at IS NULL OR ends_at > %(at)s)"
    " ORDER BY period LIMIT 1 FOR SHARE"
)


def system_clock() -> datetime:
    return datetime.now(UTC)


class BoardError(ValueError):
    """A board definition that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    sort_order: SortOrder = "desc"
    combine: Combine = "sum"
    reset_cron: str | None = None
    time_zone: str = "UTC"
    season_start: datetime | None = None
    season_end: datetime | None = None
    keep_periods: int = 0
    min_value: int | None = None
    max_value: int | None = None
    # Tiers, best first (common.tiers); not in BOARD_COLUMNS: the `tiers` column is read by
    # leaderboard_service only.
    tiers: tuple[Tier, ...] = ()

    def validated(self) -> Board:
        """This board, or BoardError naming what is wrong."""
        if not BOARD_ID.match(self.id):
            raise BoardError("board id must match ^[a-z0-9][a-z0-9_-]{0,31}$")
        if not 1 <= len(self.name) <= 80:
            raise BoardError("name must be 1 to 80 characters")
        if self.sort_order not in SORT_ORDERS:
            raise BoardError(f"sort order must be one of {SORT_ORDERS}")
        if self.combine not in COMBINES:
            raise BoardError(f"combine must be one of {COMBINES}")
        try:
            parse_zone(self.time_zone)
            if self.reset_cron is not None:
                Schedule.parse(self.reset_cron, self.time_zone)
        except ScheduleError as exc:
            raise BoardError(str(exc)) from exc
        if self.season_start and self.season_end and self.season_start >= self.season_end:
            raise BoardError("the season must end after it starts")
        if self.keep_periods < 0:
            raise BoardError("keep periods must not be negative")
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise BoardError("min value must not exceed max value")
        try:
            validated_tiers(self.tiers, asc=self.sort_order == "asc")
        except TierError as exc:
            raise BoardError(str(exc)) from exc
        return self

    @property
    def schedule(self) -> Schedule | None:
        if self.reset_cron is None:
            return None
        return Schedule.parse(self.reset_cron, self.time_zone)

    def first_start(self, created: datetime) -> datetime:
        return self.season_start or created

    def period_end(self, start: datetime) -> datetime | None:
        """Where a period starting at `start` ends: the schedule's next firing after it, capped
        by the season's end; None when it never ends."""
        end = self.schedule.next_after(start) if self.schedule is not None else None
        if self.season_end is not None and (end is None or end > self.season_end):
            end = self.season_end
        return end

    def with_changes(self, **changes: object) -> Board:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Period:
    board_id: str
    number: int
    starts_at: datetime
    ends_at: datetime | None
    closed_at: datetime | None = None
    entries: int | None = None

    def contains(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)


def board_from_row(row: tuple[object, ...]) -> Board:
    """A board as BOARD_COLUMNS reads it."""
    (bid, name, order, combine, cron, zone, start, end, keep, low, high) = row
    return Board(
        id=str(bid),
        name=str(name),
        sort_order="asc" if order == "asc" else "desc",
        combine="best" if combine == "best" else "latest" if combine == "latest" else "sum",
        reset_cron=None if cron is None else str(cron),
        time_zone=str(zone),
        season_start=start if isinstance(start, datetime) else None,
        season_end=end if isinstance(end, datetime) else None,
        keep_periods=int(str(keep)),
        min_value=None if low is None else int(str(low)),
        max_value=None if high is None else int(str(high)),
    )


def period_from_row(row: tuple[object, ...]) -> Period:
    """A period as PERIOD_COLUMNS reads it."""
    board, number, start, end, closed, entries = row
    assert isinstance(start, datetime), start
    return Period(
        board_id=str(board),
        number=int(str(number)),
        starts_at=start,
        ends_at=end if isinstance(end, datetime) else None,
        closed_at=closed if isinstance(closed, datetime) else None,
        entries=None if entries is None else int(str(entries)),
    )
