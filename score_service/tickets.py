"""Action tickets (anti-cheat): StartAction issues a signed, single-use ticket; CompleteAction must
present it no sooner than the action's minimum duration, for the same user and action, once.

A ticket is '<id>.<HMAC(id)>'. The id is a row in action_tickets (who, which action, when it
becomes valid, when it expires, when it was used); the MAC keeps guessed or altered ids from
ever reaching the database. Every time is the database clock, so replicas cannot disagree.

StartAction is TicketIssuer.start(); CompleteAction checks and uses the ticket inside the score
transaction (score_service.ledger) with check_ticket() and use_ticket().
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc

from common.db import Conn, Pool
from common.errors import Reason, ServiceError, invalid, not_found, precondition
from common.timestamps import timestamp_pb
from score_service.ledger_rows import decode_context, decode_stats, result_sets
from score_service.ledger_sql import START_READ_SQL
from score_service.rules import check_completion
from scoreboard.score.v1 import score_service_pb2 as pb

MAX_TICKET_LENGTH = 200


class TicketSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, ticket_id: str) -> str:
        mac = hmac.new(self._secret, ticket_id.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{ticket_id}.{mac}"

    def open(self, ticket: str) -> str:
        """The ticket's id, when the MAC is right and the id is a UUID; else TICKET_INVALID."""
        ticket_id, _, mac = ticket.partition(".")
        expected = self.sign(ticket_id).partition(".")[2]
        if not mac or not hmac.compare_digest(mac.encode(), expected.encode()):
            raise invalid("the ticket is not valid", Reason.TICKET_INVALID)
        try:
            return str(uuid.UUID(ticket_id))
        except ValueError:
            raise invalid("the ticket is not valid", Reason.TICKET_INVALID) from None


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    not_before: datetime
    expires_at: datetime


async def issue_ticket(
    conn: Conn,
    signer: TicketSigner,
    *,
    board: str,
    user_id: str,
    action_id: str,
    min_duration_seconds: int,
    ttl_seconds: int,
) -> IssuedTicket:
    ticket_id = str(uuid.uuid4())
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
            min_duration_seconds,
            min_duration_seconds + ttl_seconds,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    not_before, expires_at = row
    assert isinstance(not_before, datetime) and isinstance(expires_at, datetime)
    return IssuedTicket(signer.sign(ticket_id), not_before, expires_at)


async def check_ticket(
    conn: Conn,
    signer: TicketSigner,
    ticket: str,
    *,
    board: str,
    user_id: str,
    action_id: str,
    now: datetime,
) -> str:
    """The ticket's id when it may be used now, locked until the transaction ends; else the
    refusal. Nothing is written: use_ticket() marks it used once the completion is accepted."""
    if not ticket:
        raise precondition(
            Reason.TICKET_REQUIRED, f"action {action_id} needs a ticket from StartAction"
        )
    ticket_id = signer.open(ticket)
    cur = await conn.execute(
        "SELECT user_id::text, action_id, board_id, not_before, expires_at, used_at"
        " FROM action_tickets WHERE id = %s FOR UPDATE",
        (ticket_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise invalid("the ticket is not valid", Reason.TICKET_INVALID)
    owner, ticket_action, ticket_board, not_before, expires_at, used_at = row
    if (owner, ticket_action, ticket_board) != (user_id, action_id, board):
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
    return ticket_id


async def use_ticket(conn: Conn, ticket_id: str, now: datetime) -> None:
    """Mark the ticket used, in the completion's transaction (a rollback leaves it unused)."""
    await conn.execute("UPDATE action_tickets SET used_at = %s WHERE id = %s", (now, ticket_id))


class TicketIssuer:
    """StartAction: a ticket for a user and an action, in a transaction of its own."""

    def __init__(self, pool: Pool, signer: TicketSigner) -> None:
        self._pool = pool
        self._signer = signer

    async def start(
        self, board: str, user_id: str, action_id: str, ttl_seconds: int
    ) -> pb.StartActionResponse:
        """Issue a ticket. Refused early when the completion could not count anyway (inactive,
        daily limit reached, or still cooling down once the minimum duration has passed)."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT banned FROM users WHERE id = %s", (user_id,))
            user = await cur.fetchone()
            if user is None:
                raise not_found(Reason.USER_NOT_FOUND, "no such user")
            if user[0]:
                raise ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED, Reason.USER_BANNED, "this user is banned"
                )
            context, counters = await result_sets(
                conn,
                START_READ_SQL,
                {
                    "board": board,
                    "actions": [action_id],
                    "pair_users": [user_id],
                    "pair_actions": [action_id],
                },
            )
            actions, now, today = decode_context(context)
            stat = decode_stats(counters).get((user_id, action_id))
            action = actions.get(action_id)
            if action is None:
                raise invalid(f"Unknown action: {action_id}", Reason.ACTION_NOT_FOUND)
            check_completion(
                action,
                today_count=stat.day_count if stat is not None and stat.day == today else 0,
                last_completed=stat.last_at if stat is not None else None,
                now=now + timedelta(seconds=action.min_duration_seconds),
            )
            issued = await issue_ticket(
                conn,
                self._signer,
                board=board,
                user_id=user_id,
                action_id=action_id,
                min_duration_seconds=action.min_duration_seconds,
                ttl_seconds=ttl_seconds,
            )
        return pb.StartActionResponse(
            ticket=issued.ticket,
            not_before_time=timestamp_pb(issued.not_before),
            expire_time=timestamp_pb(issued.expires_at),
        )
