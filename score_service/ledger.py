"""The score transaction: one PostgreSQL transaction writes the ledger row, the new total and
version, and the outbox row (DESIGN decisions 1-3).

Concurrency: the user's user_scores row is locked (SELECT ... FOR UPDATE) before the rules are
checked. Completions of one user are serialised, which the daily limit and cooldown need anyway;
an optimistic version check would only turn that contention into retries. The unique
(user, action, day, slot) index makes the database itself refuse a completion past the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg import errors

from common.db import Conn, Pool
from common.errors import Reason, ServiceError, conflict, invalid, not_found, precondition
from score_service.catalog import COLUMNS, CatalogAction
from score_service.ranks import RankReader
from score_service.rules import check_completion
from scoreboard.events.v1 import events_pb2
from scoreboard.score.v1 import score_service_pb2 as pb

NOTIFY_CHANNEL = "scoreboard_outbox"


@dataclass(frozen=True)
class Completion:
    board_id: str
    user_id: str
    action_id: str
    actor: str
    caller: str
    path: str
    request_id: str
    idempotency_key: str = ""
    ticket: str = ""

    def request_hash(self) -> bytes:
        parts = (self.board_id, self.user_id, self.action_id, self.ticket)
        return hashlib.sha256("\x1f".join(parts).encode()).digest()


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


class TicketSigner:
    """Tickets are '<id>.<HMAC(id)>': the id is looked up in PostgreSQL; the MAC keeps guessed
    or altered ids from ever reaching the database."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, ticket_id: str) -> str:
        mac = hmac.new(self._secret, ticket_id.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{ticket_id}.{mac}"

    def open(self, ticket: str) -> str:
        ticket_id, _, mac = ticket.partition(".")
        expected = self.sign(ticket_id).partition(".")[2]
        if not mac or not hmac.compare_digest(mac, expected):
            raise invalid("the ticket is not valid", Reason.TICKET_INVALID)
        return ticket_id


class Ledger:
    def __init__(self, pool: Pool, ranks: RankReader, tickets: TicketSigner) -> None:
        self._pool = pool
        self._ranks = ranks
        self._tickets = tickets

    async def complete(self, c: Completion) -> pb.CompleteActionResponse:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                return await self._complete(conn, c)
        except errors.UniqueViolation as exc:
            # Only reachable if the rules above were bypassed: the slot index refused it.
            raise precondition(
                Reason.DAILY_LIMIT_REACHED, "Action already completed today"
            ) from exc

    async def _complete(self, conn: Conn, c: Completion) -> pb.CompleteActionResponse:
        if c.idempotency_key:
            replay = await self._claim_key(conn, c)
            if replay is not None:
                return replay
        action = await self._action(conn, c.action_id)
        score = await self._lock_score(conn, c.board_id, c.user_id)
        total, version, display_name = score
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE day = (now() AT TIME ZONE 'UTC')::date),"
            " max(created_at), clock_timestamp()"
            " FROM user_actions WHERE board_id = %s AND user_id = %s AND action_id = %s"
            " AND kind = 'action'",
            (c.board_id, c.user_id, c.action_id),
        )
        row = await cur.fetchone()
        assert row is not None
        today_count, last, now = int(row[0]), row[1], row[2]  # type: ignore[call-overload]
        assert isinstance(now, datetime)
        slot = check_completion(
            action,
            today_count=today_count,
            last_completed=last if isinstance(last, datetime) else None,
            now=now,
        )
        if action.requires_ticket or c.ticket:
            await self._use_ticket(conn, c, now)
        points = action.points
        cur = await conn.execute(
            "INSERT INTO user_actions (board_id, user_id, kind, action_id, points, day, slot,"
            " actor, path, request_id)"
            " VALUES (%s, %s, 'action', %s, %s, (now() AT TIME ZONE 'UTC')::date, %s, %s, %s, %s)"
            " RETURNING id, created_at",
            (c.board_id, c.user_id, c.action_id, points, slot, c.actor, c.path, c.request_id),
        )
        ledger = await cur.fetchone()
        assert ledger is not None
        ledger_id, committed = int(ledger[0]), ledger[1]  # type: ignore[call-overload]
        assert isinstance(committed, datetime)
        cur = await conn.execute(
            "UPDATE user_scores SET total = total + %s, version = version + 1,"
            " reached_at = %s, updated_at = %s WHERE board_id = %s AND user_id = %s"
            " RETURNING total, version",
            (points, committed, committed, c.board_id, c.user_id),
        )
        updated = await cur.fetchone()
        assert updated is not None
        total, version = int(updated[0]), int(updated[1])  # type: ignore[call-overload]
        event = events_pb2.ScoreUpdated(
            event_id=f"{c.board_id}:{ledger_id}",
            board_id=c.board_id,
            user_id=c.user_id,
            display_name=display_name,
            total=total,
            increment=points,
            version=version,
            action_id=c.action_id,
            ledger_entry_id=ledger_id,
            commit_time=_timestamp(committed),
            reached_time=_timestamp(committed),
        )
        await conn.execute(
            "INSERT INTO outbox (board_id, payload) VALUES (%s, %s)",
            (c.board_id, event.SerializeToString()),
        )
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, c.board_id))
        response = pb.CompleteActionResponse(
            new_score=total,
            increment=points,
            rank=await self._ranks.rank_for(conn, c.board_id, total),
            message="Action completed successfully",
            version=version,
            commit_time=_timestamp(committed),
            ledger_entry_id=ledger_id,
        )
        if c.idempotency_key:
            await conn.execute(
                "UPDATE idempotency_keys SET response = %s WHERE caller = %s AND key = %s",
                (response.SerializeToString(), c.caller, c.idempotency_key),
            )
        return response

    async def _claim_key(self, conn: Conn, c: Completion) -> pb.CompleteActionResponse | None:
        """Insert the key, or find the first request's. A concurrent twin blocks on the row
        until the first transaction ends, then replays its committed response."""
        digest = c.request_hash()
        cur = await conn.execute(
            "INSERT INTO idempotency_keys (caller, key, request_hash) VALUES (%s, %s, %s)"
            " ON CONFLICT (caller, key) DO NOTHING RETURNING 1",
            (c.caller, c.idempotency_key, digest),
        )
        if await cur.fetchone() is not None:
            return None
        cur = await conn.execute(
            "SELECT request_hash, response FROM idempotency_keys WHERE caller = %s AND key = %s",
            (c.caller, c.idempotency_key),
        )
        row = await cur.fetchone()
        if row is None or row[1] is None:
            raise ServiceError(
                grpc.StatusCode.ABORTED,
                Reason.IDEMPOTENCY_CONFLICT,
                "a request with this idempotency key is still in progress; retry",
            )
        if bytes(row[0]) != digest:  # type: ignore[call-overload]
            raise conflict(
                Reason.IDEMPOTENCY_CONFLICT,
                "this idempotency key was used with a different request",
            )
        replay = pb.CompleteActionResponse.FromString(bytes(row[1]))  # type: ignore[call-overload]
        replay.replayed = True
        return replay

    async def _action(self, conn: Conn, action_id: str) -> CatalogAction:
        cur = await conn.execute(f"SELECT {COLUMNS} FROM actions WHERE id = %s", (action_id,))
        row = await cur.fetchone()
        if row is None:
            raise invalid(f"Unknown action: {action_id}", Reason.ACTION_NOT_FOUND)
        return CatalogAction.from_row(row)

    async def _lock_score(self, conn: Conn, board: str, user_id: str) -> tuple[int, int, str]:
        # FOR SHARE OF u: a completion waiting behind a ban re-reads users.banned after the ban
        # commits (a row that is not locked would keep its stale value). Lock order s then u,
        # as in the admin store, so the two cannot deadlock.
        lock = (
            "SELECT s.total, s.version, u.display_name, u.banned FROM user_scores s"
            " JOIN users u ON u.id = s.user_id"
            " WHERE s.board_id = %s AND s.user_id = %s FOR UPDATE OF s FOR SHARE OF u"
        )
        cur = await conn.execute(lock, (board, user_id))
        row = await cur.fetchone()
        if row is None:
            try:
                cur = await conn.execute(
                    "INSERT INTO user_scores (board_id, user_id) SELECT %s, id FROM users"
                    " WHERE id = %s ON CONFLICT DO NOTHING",
                    (board, user_id),
                )
            except errors.ForeignKeyViolation:
                raise not_found(Reason.NOT_FOUND, f"no board {board}") from None
            cur = await conn.execute(lock, (board, user_id))
            row = await cur.fetchone()
        if row is None:
            raise not_found(Reason.USER_NOT_FOUND, "no such user")
        if row[3]:
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED, Reason.USER_BANNED, "this user is banned"
            )
        return int(row[0]), int(row[1]), str(row[2])  # type: ignore[call-overload]

    async def _use_ticket(self, conn: Conn, c: Completion, now: datetime) -> None:
        if not c.ticket:
            raise precondition(
                Reason.TICKET_REQUIRED, f"action {c.action_id} needs a ticket from StartAction"
            )
        ticket_id = self._tickets.open(c.ticket)
        cur = await conn.execute(
            "SELECT user_id::text, action_id, board_id, not_before, expires_at, used_at"
            " FROM action_tickets WHERE id = %s FOR UPDATE",
            (ticket_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise invalid("the ticket is not valid", Reason.TICKET_INVALID)
        user_id, action_id, board_id, not_before, expires_at, used_at = row
        if (user_id, action_id, board_id) != (c.user_id, c.action_id, c.board_id):
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED,
                Reason.TICKET_MISMATCH,
                "the ticket was issued for another user or action",
            )
        if used_at is not None:
            raise precondition(Reason.TICKET_USED, "the ticket was already used")
        assert isinstance(not_before, datetime) and isinstance(expires_at, datetime)
        if now < not_before:
            wait = max(1, int((not_before - now).total_seconds() + 0.999))
            raise precondition(
                Reason.TICKET_TOO_EARLY,
                f"the action cannot be completed this fast; wait {wait} more seconds",
                retry_after=str(wait),
            )
        if now >= expires_at:
            raise precondition(Reason.TICKET_EXPIRED, "the ticket has expired; start again")
        await conn.execute("UPDATE action_tickets SET used_at = %s WHERE id = %s", (now, ticket_id))

    async def start(
        self, board: str, user_id: str, action_id: str, ttl_seconds: int
    ) -> pb.StartActionResponse:
        async with self._pool.connection() as conn, conn.transaction():
            action = await self._action(conn, action_id)
            if not action.active:
                raise precondition(Reason.ACTION_INACTIVE, f"action {action_id} is not active")
            cur = await conn.execute("SELECT banned FROM users WHERE id = %s", (user_id,))
            user = await cur.fetchone()
            if user is None:
                raise not_found(Reason.USER_NOT_FOUND, "no such user")
            if user[0]:
                raise ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED, Reason.USER_BANNED, "this user is banned"
                )
            ticket_id = str(uuid.uuid4())
            # The database clock, the same one CompleteAction compares against.
            cur = await conn.execute(
                "INSERT INTO action_tickets (id, board_id, user_id, action_id, issued_at,"
                " not_before, expires_at) SELECT %s, %s, %s, %s, t, t + make_interval(secs => %s),"
                " t + make_interval(secs => %s) FROM clock_timestamp() AS t"
                " RETURNING not_before, expires_at",
                (
                    ticket_id,
                    board,
                    user_id,
                    action_id,
                    action.min_duration_seconds,
                    action.min_duration_seconds + ttl_seconds,
                ),
            )
            times = await cur.fetchone()
            assert times is not None
            not_before, expires = times
            assert isinstance(not_before, datetime) and isinstance(expires, datetime)
        return pb.StartActionResponse(
            ticket=self._tickets.sign(ticket_id),
            not_before_time=_timestamp(not_before),
            expire_time=_timestamp(expires),
        )
