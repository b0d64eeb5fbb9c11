"""Reset schedules: 5-field cron expressions evaluated in an IANA time zone, exactly across DST.

A board's periods end where its schedule fires. The expression is matched against local wall
time (minute, hour, day of month, month, day of week; `*`, numbers, `a-b`, `*/n`, `a-b/n` and
lists; names of months and days; day of week 0-7 with 0 and 7 Sunday; when both day fields are
restricted a day matching either fires, as in Vixie cron). A local time is turned into an
instant like this:
- a local time that does not exist (the hour skipped when clocks go forward) rolls forward to
  the first local time that exists after it: the instant the clocks changed;
- an ambiguous local time (the hour repeated when clocks go back) takes its first occurrence,
  so a schedule fires once, not twice.
Instants are aware datetimes in UTC. Pure logic: no clock is read here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Schedule", "ScheduleError", "parse_zone"]

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
# Far enough for any expression that can match at all (Feb 29 on a given weekday: 28 years).
_SEARCH_YEARS = 30


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used."""


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name!r}") from exc


def _value(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    if names is not None and text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ScheduleError(f"not a number: {text!r}")
    number = int(text)
    if not low <= number <= high:
        raise ScheduleError(f"{number} is outside {low}-{high}")
    return number


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"bad step in {part!r}")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _value(a, low, high, names), _value(b, low, high, names)
            if first > last:
                raise ScheduleError(f"empty range {body!r}")
        else:
            first = _value(body, low, high, names)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    if not values:
        raise ScheduleError(f"empty field {text!r}")
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed cron expression in a time zone."""

    expression: str
    zone: ZoneInfo
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str, time_zone: str = "UTC") -> Schedule:
        fields = expression.split()
        if len(fields) != 5:
            raise ScheduleError(
                f"a cron expression has 5 fields, not {len(fields)}: {expression!r}"
            )
        minute, hour, day, month, weekday = fields
        weekdays = _field(weekday, 0, 7, _DAYS)
        schedule = cls(
            expression=" ".join(fields),
            zone=parse_zone(time_zone),
            minutes=_field(minute, 0, 59),
            hours=_field(hour, 0, 23),
            days=_field(day, 1, 31),
            months=_field(month, 1, 12, _MONTHS),
            weekdays=frozenset(d % 7 for d in weekdays),
            any_day=day.startswith("*"),
            any_weekday=weekday.startswith("*"),
        )
        if next(schedule._local_matches(datetime(2000, 1, 1)), None) is None:
            raise ScheduleError(f"{expression!r} never fires")
        return schedule

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def _local_matches(self, start: datetime) -> Iterator[datetime]:
        """Naive local wall times that match, from `start` (naive, whole minute) on."""
        t = start
        limit = datetime(min(start.year + _SEARCH_YEARS, 9999), 1, 1)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            yield t
            t += timedelta(minutes=1)

    def instant(self, local: datetime) -> datetime:
        """The instant (UTC) a naive local wall time stands for: a nonexistent one rolls forward
        to the end of the gap, an ambiguous one is its first occurrence."""
        first = local.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if first.astimezone(self.zone).replace(tzinfo=None) == local:
            return first
        # In a gap: the clocks jumped past `local`. The end of the gap is the first instant
        # whose wall time is at or after `local`; it lies between the two readings of it.
        low = local.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        high = first
        if low > high:
            low, high = high, low
        while high - low > timedelta(seconds=1):
            mid = low + (high - low) / 2
            if mid.astimezone(self.zone).replace(tzinfo=None) >= local:
                high = mid
            else:
                low = mid
        return high.replace(microsecond=0) if high.microsecond else high

    def next_after(self, moment: datetime) -> datetime:
        """The first instant strictly after `moment` (aware) at which the schedule fires."""
        if moment.tzinfo is None:
            raise ValueError("moment must be an aware datetime")
        moment = moment.astimezone(UTC)
        # Start a little before the local reading: in a repeated hour the wall time of `moment`
        # may be its second occurrence. Instants grow with the wall time, so the first that is
        # after `moment` is the answer.
        local = moment.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)
        for candidate in self._local_matches(local - timedelta(hours=3)):
            at = self.instant(candidate)
            if at > moment:
                return at
        raise ScheduleError(f"{self.expression!r} does not fire after {moment.isoformat()}")
