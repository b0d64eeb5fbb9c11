"""Board periods in PostgreSQL (DESIGN decision 11): making sure the next period exists before the
current one ends, closing a period (its final standings frozen into the archive, with a
PeriodClosed outbox row, in one transaction), closing one by hand, and reading the archive.

Several replicas may run these at once: every change of a board's periods happens under the
board's row lock, and a close under the period's row lock (FOR UPDATE) with a check that it is
still open, so a period is frozen once whoever runs it and however often. Writers lock the
period they write into FOR SHARE (common.boards.CURRENT_PERIOD_SQL), so the freeze waits for
the writes already under way and every later write goes to the next period: the archive holds
exactly the period's scores. A crash before the commit leaves nothing (the standings and the
event are one transaction); the next pass closes it again from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from common.boards import BOARD_COLUMNS, PERIOD_COLUMNS, Board, Period, board_from_row
from common.boards import period_from_row as _period
from common.db import Conn, Pool
from common.redis_values import Entry
from common.tiers import Tier, decode
from common.timestamps import timestamp_pb
from scoreboard.events.v1 import events_pb2

log = logging.getLogger("scoreboard.periods")

# Awaited with (board, period) after the standings are written and before the outbox row
# (tests only: a crash there must repeat nothing and lose nothing).
CloseHook = Callable[[str, int], Awaitable[None]]

OUTBOX_CHANNEL = "scoreboard_outbox"  # score_service.outbox.CHANNEL: the relay listens on it
WINNERS = 10

_BOARDS_SQL = f"SELECT {BOARD_COLUMNS}, created_at FROM boards ORDER BY id"
# FOR NO KEY UPDATE, not FOR UPDATE: a writer's ledger and score rows reference the board (a
# foreign key takes FOR KEY SHARE on it), and a writer holds its period FOR SHARE, which
# end_period_now waits for: a full FOR UPDATE here would deadlock with it.
_LOCK_BOARD_SQL = f"SELECT {BOARD_COLUMNS}, created_at FROM boards WHERE id = %s FOR NO KEY UPDATE"
_SHARE_BOARD_SQL = f"SELECT {BOARD_COLUMNS}, tiers FROM boards WHERE id = %s FOR SHARE"
_PERIODS_SQL = (
    f"SELECT {PERIOD_COLUMNS} FROM board_periods WHERE board_id = %s ORDER BY period DESC LIMIT %s"
)
_LAST_SQL = f"SELECT {PERIOD_COLUMNS} FROM board_periods WHERE board_id = %s ORDER BY period DESC"
_PERIOD_SQL = f"SELECT {PERIOD_COLUMNS} FROM board_periods WHERE board_id = %s AND period = %s"
_INSERT_SQL = (
    "INSERT INTO board_periods (board_id, period, starts_at, ends_at) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)
_DUE_SQL = (
    "SELECT period FROM board_periods WHERE board_id = %s AND closed_at IS NULL"
    " AND ends_at IS NOT NULL AND ends_at <= %s ORDER BY period"
)
# The freeze: the period's ranked users in the live board's order (DESIGN decision 5; the
# direction is the board's sort order), banned users excluded, competition ranks.
_FREEZE_SQL = (
    "INSERT INTO period_standings (board_id, period, position, rank, user_id, display_name,"
    " score, reached_at)"
    " SELECT s.board_id, s.period, row_number() OVER w, rank() OVER (ORDER BY s.total {dir}),"
    " s.user_id, u.display_name, s.total, s.reached_at"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.period = %s AND s.version > 0 AND NOT u.banned"
    " WINDOW w AS (ORDER BY s.total {dir}, s.reached_at, s.user_id)"
)
# The same freeze on a board with tiers: each entry's tier (common.tiers.tier_of, the first
# whose cutoff the entry meets, else the default) frozen with it. The tier's index comes from
# a CASE of the board's cutoffs (see _tier_case); its id and name from two arrays.
_FREEZE_TIERS_SQL = (
    "INSERT INTO period_standings (board_id, period, position, rank, user_id, display_name,"
    " score, reached_at, tier_id, tier_name)"
    " SELECT board_id, period, position, rnk, user_id, display_name, total, reached_at,"
    " (%s::text[])[t], (%s::text[])[t]"
    " FROM (SELECT r.*, {case} AS t FROM ("
    " SELECT s.board_id, s.period, row_number() OVER w AS position,"
    " rank() OVER (ORDER BY s.total {dir}) AS rnk, count(*) OVER () AS n,"
    " s.user_id, u.display_name, s.total, s.reached_at"
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.period = %s AND s.version > 0 AND NOT u.banned"
    " WINDOW w AS (ORDER BY s.total {dir}, s.reached_at, s.user_id)) r) x"
)
_STANDINGS_COLUMNS = (
    "rank, user_id::text, display_name, score, (extract(epoch FROM reached_at) * 1000000)::bigint,"
    " tier_id, tier_name"
)
_PAGE_SQL = (
    f"SELECT {_STANDINGS_COLUMNS} FROM period_standings"
    " WHERE board_id = %s AND period = %s AND position > %s ORDER BY position LIMIT %s"
)
_USER_SQL = (
    f"SELECT {_STANDINGS_COLUMNS}, position FROM period_standings"
    " WHERE board_id = %s AND period = %s AND user_id = %s::uuid"
)
_CLOSE_SQL = (
    "UPDATE board_periods SET closed_at = %s, entries = %s WHERE board_id = %s AND period = %s"
)
_OUTBOX_SQL = (
    "WITH o AS (INSERT INTO outbox (board_id, payload, kind) VALUES (%s, %s, 'period_closed'))"
    " SELECT pg_notify(%s, %s)"
)
# Closed periods past the board's keep_periods lose their standings (the period row stays).
_PRUNE_SQL = (
    "DELETE FROM period_standings WHERE board_id = %s AND period IN (SELECT period FROM"
    " board_periods WHERE board_id = %s AND closed_at IS NOT NULL ORDER BY period DESC"
    " OFFSET %s)"
)


@dataclass(frozen=True)
class Standing:
    """One entry of a closed period's final standings, with the tier frozen with it (None when
    the board had no tiers when the period closed)."""

    entry: Entry
    tier: Tier | None = None


class PeriodError(Exception):
    """A period operation that cannot be done (the message says why)."""


@dataclass(frozen=True)
class Closed:
    board_id: str
    period: int
    entries: int
    next_period: int


@dataclass(frozen=True)
class BoardState:
    """A board with its current period (the one open at the clock) and the periods around it."""

    board: Board
    current: Period | None
    previous: Period | None
    next: Period | None


def _timestamp(at: datetime | None) -> Timestamp:
    return Timestamp() if at is None else timestamp_pb(at)


def _entry(row: tuple[object, ...]) -> Entry:
    rank, user, name, score, reached = row[:5]
    return Entry(int(str(rank)), str(user), str(name), int(str(score)), int(str(reached)))


def _standing(row: tuple[object, ...]) -> Standing:
    tier_id, tier_name = row[5:7]
    tier = None if tier_id is None else Tier(str(tier_id), str(tier_name))
    return Standing(_entry(row), tier)


def _tier_case(tiers: tuple[Tier, ...], asc: bool) -> tuple[str, list[object]]:
    """A CASE over the ranked row (rnk, n, total) giving the 1-based index of its tier in
    `tiers`, as common.tiers.tier_of decides it; and its parameters."""
    whens: list[str] = []
    params: list[object] = []
    default = len(tiers)
    for index, tier in enumerate(tiers, start=1):
        if tier.kind is None:
            default = index
        elif tier.kind == "top_rank":
            whens.append("WHEN rnk <= %s THEN %s")
            params += [tier.value, index]
        elif tier.kind == "top_percent":
            whens.append("WHEN rnk * 1000 <= %s * n THEN %s")
            params += [tier.value, index]
        else:
            whens.append(f"WHEN total {'<=' if asc else '>='} %s THEN %s")
            params += [tier.value, index]
    return f"CASE {' '.join(whens)} ELSE {default} END", params


async def list_boards(pool: Pool) -> list[Board]:
    async with pool.connection() as conn:
        cur = await conn.execute(_BOARDS_SQL)
        return [board_from_row(row[:-1]) for row in await cur.fetchall()]


async def _lock_board(conn: Conn, board_id: str) -> tuple[Board, datetime]:
    """The board (locked for the transaction) and when it was created."""
    cur = await conn.execute(_LOCK_BOARD_SQL, (board_id,))
    row = await cur.fetchone()
    if row is None:
        raise PeriodError(f"there is no board {board_id!r}")
    created = row[-1]
    assert isinstance(created, datetime)
    return board_from_row(row[:-1]), created


async def _ensure(conn: Conn, board: Board, created: datetime, now: datetime) -> list[Period]:
    """Under the board's row lock: periods until one holds `now`, then the one after it (when
    the current one ends). Returns the new periods."""
    cur = await conn.execute(_LAST_SQL + " LIMIT 1", (board.id,))
    row = await cur.fetchone()
    made: list[Period] = []
    if row is None:
        start = board.first_start(min(created, now))
        last = Period(board.id, 1, start, board.period_end(start))
        made.append(last)
    else:
        last = _period(row)
    # Until the newest period starts after `now` (or never ends).
    while last.ends_at is not None and last.starts_at <= now:
        start = last.ends_at
        if board.season_end is not None and start >= board.season_end:
            break
        last = Period(board.id, last.number + 1, start, board.period_end(start))
        made.append(last)
    for period in made:
        await conn.execute(_INSERT_SQL, (board.id, period.number, period.starts_at, period.ends_at))
    return made


async def ensure_periods(pool: Pool, board_id: str, now: datetime) -> list[Period]:
    """Make sure the board's period open at `now` exists, and the next one when it ends."""
    async with pool.connection() as conn, conn.transaction():
        board, created = await _lock_board(conn, board_id)
        return await _ensure(conn, board, created, now)


async def due_periods(pool: Pool, board_id: str, now: datetime) -> list[int]:
    """Periods of the board that ended by `now` and are not closed yet, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute(_DUE_SQL, (board_id, now))
        return [int(str(row[0])) for row in await cur.fetchall()]


async def close_period(
    pool: Pool,
    board_id: str,
    period: int,
    now: datetime,
    *,
    fault: CloseHook | None = None,
) -> Closed | None:
    """Freeze the period's final standings and write its PeriodClosed outbox row, in one
    transaction. None when it is closed already or has not ended by `now`."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_SHARE_BOARD_SQL, (board_id,))
        row = await cur.fetchone()
        if row is None:
            raise PeriodError(f"there is no board {board_id!r}")
        board = board_from_row(row[:-1]).with_changes(tiers=decode(row[-1]))
        cur = await conn.execute(_PERIOD_SQL + " FOR UPDATE", (board_id, period))
        found = await cur.fetchone()
        if found is None:
            raise PeriodError(f"board {board_id!r} has no period {period}")
        closing = _period(found)
        if closing.closed_at is not None or closing.ends_at is None or closing.ends_at > now:
            return None
        direction = "ASC" if board.sort_order == "asc" else "DESC"
        if board.tiers:
            case, params = _tier_case(board.tiers, board.sort_order == "asc")
            cur = await conn.execute(
                _FREEZE_TIERS_SQL.format(dir=direction, case=case),
                (
                    [t.id for t in board.tiers],
                    [t.name for t in board.tiers],
                    *params,
                    board_id,
                    period,
                ),
            )
        else:
            cur = await conn.execute(_FREEZE_SQL.format(dir=direction), (board_id, period))
        entries = cur.rowcount
        if fault is not None:
            await fault(board_id, period)
        cur = await conn.execute(_PAGE_SQL, (board_id, period, 0, WINNERS))
        winners = [_entry(r) for r in await cur.fetchall()]
        event = events_pb2.PeriodClosed(
            event_id=f"{board_id}:{period}",
            board_id=board_id,
            period=period,
            next_period=period + 1,
            start_time=_timestamp(closing.starts_at),
            end_time=_timestamp(closing.ends_at),
            close_time=_timestamp(now),
            entries=entries,
            winners=[
                events_pb2.PeriodWinner(
                    rank=e.rank, user_id=e.user_id, display_name=e.username, score=e.score
                )
                for e in winners
            ],
        )
        await conn.execute(_CLOSE_SQL, (now, entries, board_id, period))
        await conn.execute(
            _OUTBOX_SQL, (board_id, event.SerializeToString(), OUTBOX_CHANNEL, board_id)
        )
        if board.keep_periods:
            await conn.execute(_PRUNE_SQL, (board_id, board_id, board.keep_periods))
    log.info(
        "period closed",
        extra={"board": board_id, "period": period, "entries": entries},
    )
    return Closed(board_id, period, entries, period + 1)


async def end_period_now(pool: Pool, board_id: str, now: datetime) -> int:
    """End the board's open period at `now` (a close by hand): the next period starts now and
    ends where the schedule fires next. Returns the ended period (to close)."""
    async with pool.connection() as conn, conn.transaction():
        board, created = await _lock_board(conn, board_id)
        await _ensure(conn, board, created, now)
        cur = await conn.execute(
            f"SELECT {PERIOD_COLUMNS} FROM board_periods WHERE board_id = %s"
            " AND closed_at IS NULL AND starts_at <= %s AND (ends_at IS NULL OR ends_at > %s)"
            " ORDER BY period LIMIT 1 FOR UPDATE",
            (board_id, now, now),
        )
        found = await cur.fetchone()
        if found is None:
            raise PeriodError(f"board {board_id!r} has no open period now")
        current = _period(found)
        # Periods after it have not started: none holds a score. They are laid out again.
        await conn.execute(
            "DELETE FROM board_periods WHERE board_id = %s AND period > %s",
            (board_id, current.number),
        )
        await conn.execute(
            "UPDATE board_periods SET ends_at = %s WHERE board_id = %s AND period = %s",
            (now, board_id, current.number),
        )
        following_end = board.period_end(now)
        if board.season_end is None or now < board.season_end:
            await conn.execute(_INSERT_SQL, (board_id, current.number + 1, now, following_end))
        return current.number


async def board_state(pool: Pool, board_id: str, now: datetime) -> BoardState | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {BOARD_COLUMNS}, tiers FROM boards WHERE id = %s", (board_id,)
        )
        row = await cur.fetchone()
        if row is None:
            return None
        cur = await conn.execute(_PERIODS_SQL, (board_id, 1000))
        periods = [_period(r) for r in await cur.fetchall()]
    board = board_from_row(row[:-1]).with_changes(tiers=decode(row[-1]))
    current = next((p for p in reversed(periods) if p.closed_at is None and p.contains(now)), None)
    previous = next((p for p in periods if p.closed_at is not None), None)
    upcoming = next(
        (p for p in reversed(periods) if p.starts_at > now and p.closed_at is None), None
    )
    return BoardState(board, current, previous, upcoming)


async def list_periods(pool: Pool, board_id: str, before: int, limit: int) -> list[Period]:
    """The board's periods, newest first, numbered below `before` (0: from the newest)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {PERIOD_COLUMNS} FROM board_periods WHERE board_id = %s"
            " AND (%s = 0 OR period < %s) ORDER BY period DESC LIMIT %s",
            (board_id, before, before, limit),
        )
        return [_period(r) for r in await cur.fetchall()]


async def get_period(pool: Pool, board_id: str, period: int) -> Period | None:
    async with pool.connection() as conn:
        cur = await conn.execute(_PERIOD_SQL, (board_id, period))
        row = await cur.fetchone()
        return None if row is None else _period(row)


async def standings_page(
    pool: Pool, board_id: str, period: int, after: int, limit: int
) -> list[Standing]:
    """A closed period's final standings from position `after` + 1 on."""
    async with pool.connection() as conn:
        cur = await conn.execute(_PAGE_SQL, (board_id, period, after, limit))
        return [_standing(r) for r in await cur.fetchall()]


async def standing_of(
    pool: Pool, board_id: str, period: int, user_id: str
) -> tuple[Standing, int] | None:
    """A user's final entry in a closed period and its 1-based position; None if unranked."""
    async with pool.connection() as conn:
        cur = await conn.execute(_USER_SQL, (board_id, period, user_id))
        row = await cur.fetchone()
        if row is None:
            return None
        return _standing(row), int(str(row[7]))


__all__ = [
    "BoardState",
    "CloseHook",
    "Closed",
    "PeriodError",
    "Standing",
    "board_state",
    "close_period",
    "due_periods",
    "end_period_now",
    "ensure_periods",
    "get_period",
    "list_boards",
    "list_periods",
    "standing_of",
    "standings_page",
]
