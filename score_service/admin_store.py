"""Admin changes to scores: ban, unban, void and adjust, each in one PostgreSQL transaction that
writes the ledger entry (never a delete), the new total and version, the outbox event and the
audit row (DESIGN decisions 1-3). A ban's transaction also revokes the user's sessions and
every access token issued before it (auth's revocation tables share the database); the caller
announces them to every verifier once it has committed.

Locks are taken in the order CompleteAction takes them: the periods written into (FOR SHARE),
the user's user_scores rows (FOR UPDATE), then the users row. A completion that waits behind a
ban therefore sees the ban when it gets its locks, and the two can never deadlock. Every change
belongs to a board's open period (DESIGN decision 11): a ban or unban writes into every open
period the user has a score in, on every board; a void into the voided entry's period (refused
once that period is closed: its standings are frozen); an adjustment into the period open now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg import errors

from common.audit import write_audit
from common.auth.denylist import USER_REVOCATION_SECONDS
from common.boards import CURRENT_PERIOD_SQL
from common.db import Conn, Pool
from common.errors import Reason, not_found, precondition
from common.timestamps import timestamp_pb
from score_service import outbox
from scoreboard.admin.v1 import admin_service_pb2 as pb

MAX_ADJUST = 1_000_000
VOIDABLE = ("action", "adjust")
KINDS = {
    "action": pb.LEDGER_ENTRY_KIND_ACTION,
    "void": pb.LEDGER_ENTRY_KIND_VOID,
    "adjust": pb.LEDGER_ENTRY_KIND_ADJUST,
    "ban": pb.LEDGER_ENTRY_KIND_BAN,
    "unban": pb.LEDGER_ENTRY_KIND_UNBAN,
}
ENTRY_COLUMNS = (
    "e.id, e.board_id, e.user_id::text, e.kind, e.action_id, e.points, e.voids,"
    " (SELECT v.id FROM user_actions v WHERE v.voids = e.id), e.actor, e.path, e.request_id,"
    " e.reason, e.created_at"
)


@dataclass(frozen=True)
class Act:
    """Who acts, why, and under which request id (for the ledger and the audit log)."""

    actor: str
    reason: str
    request_id: str


@dataclass(frozen=True)
class UserRevocation:
    """What a ban revoked, to announce after the commit: every token of the user issued before
    `before`, and the user's login sessions (each with the expiry of its newest token)."""

    user_id: str
    before: datetime
    sessions: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass(frozen=True)
class BanChange:
    states: list[pb.ScoreState]
    audit_id: int
    # Set by a ban (None for an unban: tokens revoked by the ban stay revoked).
    revocation: UserRevocation | None = None


def as_int(value: object) -> int:
    """A bigint column's value (psycopg returns int)."""
    assert isinstance(value, int), value
    return value


def entry_pb(row: tuple[object, ...]) -> pb.LedgerEntry:
    (entry_id, board, user, kind, action, points, voids, voided_by) = row[:8]
    actor, path, request_id, reason, created = row[8:]
    assert isinstance(created, datetime)
    return pb.LedgerEntry(
        entry_id=as_int(entry_id),
        board_id=str(board),
        user_id=str(user),
        kind=KINDS.get(str(kind), pb.LEDGER_ENTRY_KIND_UNSPECIFIED),
        action_id=str(action or ""),
        points=as_int(points),
        voids_entry_id=as_int(voids or 0),
        voided_by_entry_id=as_int(voided_by or 0),
        actor=str(actor),
        path=str(path),
        request_id=str(request_id or ""),
        reason=str(reason or ""),
        create_time=timestamp_pb(created),
    )


class AdminStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def set_banned(self, board: str, user_id: str, banned: bool, act: Act) -> BanChange:
        """Ban or unban; every open period of every board with a score gets a 0-point entry and
        an event. A ban also revokes the user's sessions and tokens (_revoke_user), in the same
        transaction."""
        async with self._pool.connection() as conn, conn.transaction():
            # The default board's row of its open period exists before anything is locked, so
            # a first completion racing the ban cannot create it behind the ban's back.
            await _open_period_with_row(conn, board, user_id)
            # The open periods the user has a score in, then the score rows, in the writers'
            # order (periods, then rows by board and period).
            await conn.execute(
                "SELECT p.board_id, p.period FROM board_periods p JOIN user_scores s"
                " ON s.board_id = p.board_id AND s.period = p.period AND s.user_id = %s"
                " WHERE p.closed_at IS NULL ORDER BY p.board_id, p.period FOR SHARE OF p",
                (user_id,),
            )
            cur = await conn.execute(
                "SELECT s.board_id, s.period, s.version FROM user_scores s"
                " JOIN board_periods p ON p.board_id = s.board_id AND p.period = s.period"
                " WHERE s.user_id = %s AND p.closed_at IS NULL"
                " ORDER BY s.board_id, s.period FOR UPDATE OF s",
                (user_id,),
            )
            boards = [(str(r[0]), as_int(r[1]), as_int(r[2])) for r in await cur.fetchall()]
            cur = await conn.execute(
                "SELECT banned, display_name FROM users WHERE id = %s FOR UPDATE", (user_id,)
            )
            user = await cur.fetchone()
            if user is None:
                raise not_found(Reason.USER_NOT_FOUND, "no such user")
            if bool(user[0]) == banned:
                if banned:
                    raise precondition(Reason.USER_BANNED, "this user is already banned")
                raise precondition(Reason.USER_NOT_BANNED, "this user is not banned")
            await conn.execute("UPDATE users SET banned = %s WHERE id = %s", (banned, user_id))
            revocation = await _revoke_user(conn, user_id) if banned else None
            kind = "ban" if banned else "unban"
            states = []
            for board_id, board_period, version in boards:
                if version == 0:
                    continue  # never scored: not ranked, nothing to change
                _, state = await _change(
                    conn,
                    board_id,
                    board_period,
                    user_id,
                    str(user[1]),
                    kind,
                    0,
                    act,
                    excluded=banned,
                )
                states.append(state)
            audit_id = await audit(
                conn,
                act,
                f"user.{kind}",
                user_id,
                {"reason": act.reason, "boards": [s.board_id for s in states]},
            )
        return BanChange(states, audit_id, revocation)

    async def void(self, entry_id: int, act: Act) -> tuple[pb.LedgerEntry, pb.ScoreState, int]:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT board_id, user_id::text, kind, points, period FROM user_actions"
                " WHERE id = %s",
                (entry_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise not_found(Reason.LEDGER_ENTRY_NOT_FOUND, f"no ledger entry {entry_id}")
            board, user_id, kind, points = str(row[0]), str(row[1]), str(row[2]), as_int(row[3])
            period = as_int(row[4])
            if kind not in VOIDABLE:
                raise precondition(
                    Reason.LEDGER_ENTRY_NOT_VOIDABLE,
                    f"a {kind} entry cannot be voided; only action and adjust entries can",
                )
            cur = await conn.execute(
                "SELECT closed_at IS NOT NULL FROM board_periods WHERE board_id = %s"
                " AND period = %s FOR SHARE",
                (board, period),
            )
            closed = await cur.fetchone()
            if closed is not None and closed[0]:
                raise precondition(
                    Reason.PERIOD_ALREADY_CLOSED,
                    f"entry {entry_id} belongs to period {period} of board {board}, which is"
                    " closed: its standings are frozen",
                )
            _, _, banned, name = await _lock_user(conn, board, period, user_id)
            cur = await conn.execute("SELECT id FROM user_actions WHERE voids = %s", (entry_id,))
            voided = await cur.fetchone()
            if voided is not None:
                raise precondition(
                    Reason.LEDGER_ENTRY_ALREADY_VOIDED,
                    f"entry {entry_id} is already voided by entry {voided[0]}",
                )
            try:
                new_id, state = await _change(
                    conn,
                    board,
                    period,
                    user_id,
                    name,
                    "void",
                    -points,
                    act,
                    excluded=banned,
                    voids=entry_id,
                )
            except errors.UniqueViolation:  # a concurrent void of the same entry won
                raise precondition(
                    Reason.LEDGER_ENTRY_ALREADY_VOIDED, f"entry {entry_id} is already voided"
                ) from None
            audit_id = await audit(
                conn,
                act,
                "ledger.void",
                str(entry_id),
                {"reason": act.reason, "user_id": user_id, "points": -points, "entry": new_id},
            )
            entry = await _entry(conn, new_id)
        return entry, state, audit_id

    async def adjust(
        self, board: str, user_id: str, points: int, act: Act
    ) -> tuple[pb.LedgerEntry, pb.ScoreState, int]:
        async with self._pool.connection() as conn, conn.transaction():
            period = await _open_period_with_row(conn, board, user_id)
            total, _, banned, name = await _lock_user(conn, board, period, user_id)
            if total + points < 0:
                raise precondition(
                    Reason.NEGATIVE_TOTAL,
                    f"the total would become negative ({total} {points:+d})",
                )
            new_id, state = await _change(
                conn, board, period, user_id, name, "adjust", points, act, excluded=banned
            )
            audit_id = await audit(
                conn,
                act,
                "score.adjust",
                user_id,
                {"reason": act.reason, "board": board, "points": points, "entry": new_id},
            )
            entry = await _entry(conn, new_id)
        return entry, state, audit_id


async def _revoke_user(conn: Conn, user_id: str) -> UserRevocation:
    """Revoke every refresh token of the user and each of its sessions, and refuse every access
    token issued before now, for longer than any of them lives. A login or refresh racing the
    ban either waits for it (and is refused) or wrote its token before this statement, which
    then revokes that session too."""
    cur = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL"
        " RETURNING family_id::text",
        (user_id,),
    )
    rows = await cur.fetchall()
    cur = await conn.execute("SELECT clock_timestamp()")
    now = await cur.fetchone()
    assert now is not None and isinstance(now[0], datetime)
    before: datetime = now[0]
    expires = before + timedelta(seconds=USER_REVOCATION_SECONDS)
    sessions = sorted({str(r[0]) for r in rows})
    for family in sessions:
        await conn.execute(
            "INSERT INTO revoked_sessions (family_id, expires_at) VALUES (%s, %s)"
            " ON CONFLICT (family_id) DO UPDATE SET expires_at ="
            " greatest(revoked_sessions.expires_at, EXCLUDED.expires_at)",
            (family, expires),
        )
    await conn.execute(
        "INSERT INTO revoked_users (user_id, revoked_before, expires_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET revoked_before = EXCLUDED.revoked_before,"
        " expires_at = EXCLUDED.expires_at, revoked_at = now()",
        (user_id, before, expires),
    )
    return UserRevocation(user_id, before, [(f, expires) for f in sessions])


async def _open_period(conn: Conn, board: str) -> int:
    """The board's period open now, locked FOR SHARE (as a completion locks it)."""
    cur = await conn.execute(CURRENT_PERIOD_SQL, {"board": board, "at": datetime.now(UTC)})
    row = await cur.fetchone()
    if row is None:
        raise precondition(Reason.NO_OPEN_PERIOD, f"board {board} has no open period")
    return as_int(row[0])


async def _open_period_with_row(conn: Conn, board: str, user_id: str) -> int:
    """The board's open period (_open_period), with the user's score row in it created if
    missing (an existing user only)."""
    period = await _open_period(conn, board)
    await conn.execute(
        "INSERT INTO user_scores (board_id, period, user_id) SELECT %s, %s, id FROM users"
        " WHERE id = %s ON CONFLICT DO NOTHING",
        (board, period, user_id),
    )
    return period


async def _lock_user(
    conn: Conn, board: str, period: int, user_id: str
) -> tuple[int, int, bool, str]:
    """Lock the user's score row, then the users row: total, version, banned, display name."""
    cur = await conn.execute(
        "SELECT s.total, s.version, u.banned, u.display_name FROM user_scores s"
        " JOIN users u ON u.id = s.user_id WHERE s.board_id = %s AND s.period = %s"
        " AND s.user_id = %s FOR UPDATE OF s FOR SHARE OF u",
        (board, period, user_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found(Reason.USER_NOT_FOUND, "no such user")
    return as_int(row[0]), as_int(row[1]), bool(row[2]), str(row[3])


async def _change(
    conn: Conn,
    board: str,
    period: int,
    user_id: str,
    display_name: str,
    kind: str,
    points: int,
    act: Act,
    *,
    excluded: bool,
    voids: int | None = None,
) -> tuple[int, pb.ScoreState]:
    """One ledger entry, the new total and version, and its outbox event (rows locked)."""
    cur = await conn.execute(
        "INSERT INTO user_actions (board_id, period, user_id, kind, points, day, voids, actor,"
        " path, request_id, reason) VALUES (%s, %s, %s, %s, %s, (now() AT TIME ZONE 'UTC')::date,"
        " %s, %s, 'admin', %s, %s) RETURNING id, created_at",
        (board, period, user_id, kind, points, voids, act.actor, act.request_id, act.reason),
    )
    row = await cur.fetchone()
    assert row is not None
    entry_id, committed = as_int(row[0]), row[1]
    assert isinstance(committed, datetime)
    # A change of points is a new total reached now; a ban or unban keeps the time reached.
    cur = await conn.execute(
        "UPDATE user_scores SET total = total + %s, version = version + 1,"
        " reached_at = CASE WHEN %s <> 0 THEN %s ELSE reached_at END, updated_at = %s"
        " WHERE board_id = %s AND period = %s AND user_id = %s"
        " RETURNING total, version, reached_at",
        (points, points, committed, committed, board, period, user_id),
    )
    updated = await cur.fetchone()
    assert updated is not None
    total, version, reached = as_int(updated[0]), as_int(updated[1]), updated[2]
    assert isinstance(reached, datetime)
    event = outbox.score_event(
        board=board,
        period=period,
        user_id=user_id,
        display_name=display_name,
        ledger_id=entry_id,
        total=total,
        increment=points,
        version=version,
        committed=committed,
        reached=reached,
        excluded=excluded,
    )
    await outbox.append(conn, event)
    return entry_id, pb.ScoreState(board_id=board, total=total, version=version, excluded=excluded)


async def _entry(conn: Conn, entry_id: int) -> pb.LedgerEntry:
    cur = await conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM user_actions e WHERE e.id = %s", (entry_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return entry_pb(row)


async def audit(conn: Conn, act: Act, action: str, target: str, detail: dict[str, object]) -> int:
    return await write_audit(
        conn,
        actor=act.actor,
        action=action,
        target=target,
        detail=detail,
        request_id=act.request_id,
    )
