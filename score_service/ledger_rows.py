"""The rows of the score transaction's statements (score_service.ledger_sql), decoded: the boards
and their open periods, the locked score rows, the catalog and the clock, the rule counters,
what the write returned, and the completions found by identity after a COMMIT whose outcome was
unknown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import AsyncClientCursor

from common.boards import board_from_row
from common.db import Conn
from score_service.catalog import CatalogAction
from score_service.ledger_boards import OpenBoard


@dataclass
class LockedUser:
    """A locked user's score row (LOCK_SQL), advanced in memory as the group's completions are
    checked."""

    display_name: str
    banned: bool
    total: int
    version: int
    reached_at: datetime
    day: date | None
    day_points: int
    last_action_at: datetime | None
    last_action_id: str | None

    def points_on(self, today: date) -> int:
        return self.day_points if self.day == today else 0


@dataclass(frozen=True)
class ActionStat:
    """A user's counters for one action (STATS_SQL)."""

    day: date
    day_count: int
    last_at: datetime


async def result_sets(
    conn: Conn, statements: str, params: Mapping[str, object]
) -> list[list[tuple[object, ...]]]:
    """Run several statements in one round trip (client-side parameters, so one query string
    may hold them all) and return each one's rows."""
    cur = AsyncClientCursor(conn)
    await cur.execute(statements, params)
    sets = [list(await cur.fetchall())]
    while cur.nextset():
        sets.append(list(await cur.fetchall()))
    return sets


# A score row: (board, period, user id).
RowKey = tuple[str, int, str]


def decode_users(rows: Sequence[tuple[object, ...]]) -> dict[RowKey, LockedUser]:
    """LOCK_SQL's rows by (board, period, user id)."""
    users: dict[RowKey, LockedUser] = {}
    for full in rows:
        key = (str(full[0]), int(full[1]), str(full[2]))  # type: ignore[call-overload]
        row = full[2:]
        reached = row[5]
        assert isinstance(reached, datetime)
        users[key] = LockedUser(
            display_name=str(row[1]),
            banned=bool(row[2]),
            total=int(row[3]),  # type: ignore[call-overload]
            version=int(row[4]),  # type: ignore[call-overload]
            reached_at=reached,
            day=row[6] if isinstance(row[6], date) else None,
            day_points=int(row[7]),  # type: ignore[call-overload]
            last_action_at=_opt_time(row[8]),
            last_action_id=str(row[9]) if row[9] is not None else None,
        )
    return users


def decode_context(
    rows: Sequence[tuple[object, ...]],
) -> tuple[dict[str, CatalogAction], datetime, date]:
    """CONTEXT_SQL's rows: the actions by id, the clock and today's date (UTC)."""
    now, today = rows[0][0], rows[0][1]
    assert isinstance(now, datetime) and isinstance(today, date)
    actions = {}
    for row in rows:
        if row[2] is not None:
            action = CatalogAction.from_row(row[2:])
            actions[action.action_id] = action
    return actions, now, today


def decode_stats(rows: Sequence[tuple[object, ...]]) -> dict[tuple[str, str], ActionStat]:
    """STATS_SQL's rows by (user id, action id)."""
    stats = {}
    for row in rows:
        day, last = row[2], row[4]
        assert isinstance(day, date) and isinstance(last, datetime)
        stats[(str(row[0]), str(row[1]))] = ActionStat(day, int(row[3]), last)  # type: ignore[call-overload]
    return stats


def decode_written(
    rows: Sequence[tuple[object, ...]],
) -> dict[tuple[str, str, str, int], tuple[int, datetime]]:
    """WRITE_SQL's rows: (board, user id, action id, slot) -> (ledger entry id, its commit
    time)."""
    written: dict[tuple[str, str, str, int], tuple[int, datetime]] = {}
    for row in rows:
        committed = row[5]
        assert isinstance(committed, datetime)
        key = (str(row[0]), str(row[1]), str(row[2]), int(row[3]))  # type: ignore[call-overload]
        written[key] = (int(row[4]), committed)  # type: ignore[call-overload]
    return written


@dataclass(frozen=True)
class LandedRow:
    """A completion's row on one board, found in the ledger by its identity (LANDED_SQL), and
    the user's state on that board and period right after it."""

    user_id: str
    ledger_id: int
    points: int
    committed: datetime
    total: int
    version: int
    flags: list[tuple[str, dict[str, object]]]
    board_id: str = "default"
    period: int = 1
    asc: bool = False


def decode_landed(rows: Sequence[tuple[object, ...]]) -> dict[str, list[LandedRow]]:
    """LANDED_SQL's rows by completion id (a row per board, oldest first)."""
    landed: dict[str, list[LandedRow]] = {}
    for row in rows:
        committed, flags = row[4], row[7]
        assert isinstance(committed, datetime) and isinstance(flags, list)
        landed.setdefault(str(row[0]), []).append(
            LandedRow(
                user_id=str(row[1]),
                ledger_id=int(row[2]),  # type: ignore[call-overload]
                points=int(row[3]),  # type: ignore[call-overload]
                committed=committed,
                total=int(row[5]),  # type: ignore[call-overload]
                version=int(row[6]),  # type: ignore[call-overload]
                flags=[(str(kind), dict(detail)) for kind, detail in flags],
                board_id=str(row[8]),
                period=int(row[9]),  # type: ignore[call-overload]
                asc=bool(row[10]),
            )
        )
    return landed


def _opt_time(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def decode_boards(
    action_rows: Sequence[tuple[object, ...]], board_rows: Sequence[tuple[object, ...]]
) -> tuple[dict[str, tuple[str, ...]], dict[str, OpenBoard]]:
    """BOARDS_SQL's two result sets: each action's further boards, and every board named with
    its open period (None when it has none)."""
    further = {
        str(row[0]): tuple(str(b) for b in row[1])  # type: ignore[attr-defined]
        for row in action_rows
    }
    boards: dict[str, OpenBoard] = {}
    for row in board_rows:
        board = board_from_row(row[:-1])
        period = row[-1]
        boards[board.id] = OpenBoard(board, None if period is None else int(str(period)))
    return further, boards
