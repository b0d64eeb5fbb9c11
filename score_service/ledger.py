"""The score transaction: one PostgreSQL transaction writes the ledger row, the new total and
version, the outbox row and any anomaly flags (DESIGN decisions 1-3).

Concurrency: a pessimistic row lock plus an atomic update, not optimistic retries. The user's
user_scores row is locked (SELECT ... FOR UPDATE) before the rules are checked, so completions of
one user run one after another; the daily limit, the cooldown, the slot and the anomaly checks
all read the ledger under that lock and are exact. The total and version then change in one
`UPDATE ... SET total = total + p, version = version + 1`. An optimistic version check would only
turn the same contention into failed attempts and retries (50 identical requests: 49 retry
loops), and the rules would still need a lock or SERIALIZABLE to be exact. The unique
(user, action, day, slot) index makes PostgreSQL itself refuse a completion past the limit,
whatever the code above it does.

Round trips (each costs ~170 µs of Python CPU here, the bulk of a completion's cost): claim the
idempotency key, lock the user's row, read the action with the user's recent completions, write
the ledger row with the new total, write the outbox row with its NOTIFY and the stored response;
plus BEGIN and COMMIT. Anomaly flags add one insert each, only when raised.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter
from psycopg import errors

from common.db import Conn, Pool
from common.errors import Reason, ServiceError, invalid, not_found, precondition
from score_service.anomalies import Anomaly, Recent, detect
from score_service.anomaly_store import record_anomalies
from score_service.catalog import COLUMNS, CatalogAction
from score_service.config import AnomalySettings
from score_service.idempotency import claim_key
from score_service.ranks import RankReader
from score_service.rules import check_active, check_completion, check_limits
from score_service.tickets import TicketSigner, issue_ticket, redeem_ticket
from scoreboard.events.v1 import events_pb2
from scoreboard.score.v1 import score_service_pb2 as pb

__all__ = ["COMPLETED_MESSAGE", "NOTIFY_CHANNEL", "Completion", "Ledger", "TicketSigner"]

NOTIFY_CHANNEL = "scoreboard_outbox"
COMPLETED_MESSAGE = "Action completed successfully"

log = logging.getLogger("scoreboard.score")

ANOMALIES = Counter(
    "scoreboard_score_anomalies_total", "Completions flagged for admins, by kind.", ["kind"]
)

# The action and the user's recent completions, in one read after the user's row is locked (so
# the ledger it reads is current): today's count and the last completion of this action, today's
# points and the last completion of any action. The window is the user's day or the cooldown
# (at most a day), bounded with now() - a stable value, so it is an index condition on
# user_actions_user_recent and never a scan of the user's whole history.
_ACTION_AND_RECENT_SQL = (
    f"WITH a AS (SELECT {COLUMNS} FROM actions WHERE id = %(action)s AND board_id = %(board)s),"
    " r AS (SELECT"
    "  count(*) FILTER (WHERE action_id = %(action)s"
    "   AND day = (now() AT TIME ZONE 'UTC')::date) AS action_today,"
    "  max(created_at) FILTER (WHERE action_id = %(action)s) AS action_last,"
    "  coalesce(sum(points) FILTER (WHERE day = (now() AT TIME ZONE 'UTC')::date), 0)"
    "   AS points_today,"
    "  max(created_at) AS last_any,"
    "  (array_agg(action_id ORDER BY created_at DESC, id DESC))[1] AS last_any_action"
    "  FROM user_actions"
    "  WHERE board_id = %(board)s AND user_id = %(user)s AND kind = 'action'"
    "  AND created_at >= least("
    "   date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
    "   now() - make_interval(secs => greatest("
    "    coalesce((SELECT cooldown_seconds FROM a), 0), %(min_gap)s::float8))))"
    " SELECT clock_timestamp(), (now() AT TIME ZONE 'UTC')::date, r.*, a.*"
    " FROM r LEFT JOIN a ON true"
)

# The ledger row and the new total and version, in one statement. The tie-breaker (reached_at)
# moves only when the total does: a 0-point completion keeps the user's place among equals.
_WRITE_SQL = (
    "WITH entry AS ("
    " INSERT INTO user_actions (board_id, user_id, kind, action_id, points, day, slot,"
    "  actor, path, request_id)"
    " VALUES (%(board)s, %(user)s, 'action', %(action)s, %(points)s, %(day)s, %(slot)s,"
    "  %(actor)s, %(path)s, %(request_id)s)"
    " RETURNING id, created_at)"
    " UPDATE user_scores s SET total = s.total + %(points)s, version = s.version + 1,"
    " reached_at = CASE WHEN %(points)s <> 0 THEN entry.created_at ELSE s.reached_at END,"
    " updated_at = entry.created_at"
    " FROM entry WHERE s.board_id = %(board)s AND s.user_id = %(user)s"
    " RETURNING entry.id, entry.created_at, s.total, s.version, s.reached_at"
)


# The outbox row and its notification, and the response stored under the idempotency key: one
# statement (data-modifying CTEs always run).
_OUTBOX_SQL = (
    "WITH o AS (INSERT INTO outbox (board_id, payload) VALUES (%(board)s, %(payload)s))"
    " SELECT pg_notify(%(channel)s, %(board)s)"
)
_OUTBOX_AND_KEY_SQL = (
    "WITH o AS (INSERT INTO outbox (board_id, payload) VALUES (%(board)s, %(payload)s)),"
    " k AS (UPDATE idempotency_keys SET response = %(response)s"
    "  WHERE caller = %(caller)s AND key = %(key)s)"
    " SELECT pg_notify(%(channel)s, %(board)s)"
)


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


def _opt_time(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


class Ledger:
    def __init__(
        self,
        pool: Pool,
        ranks: RankReader,
        tickets: TicketSigner,
        anomalies: AnomalySettings | None = None,
    ) -> None:
        self._pool = pool
        self._ranks = ranks
        self._tickets = tickets
        self._anomalies = anomalies or AnomalySettings()

    async def complete(self, c: Completion) -> pb.CompleteActionResponse:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                response, flagged = await self._complete(conn, c)
        except errors.UniqueViolation as exc:
            # Only reachable if the rules above were bypassed: the slot index refused it.
            raise precondition(
                Reason.DAILY_LIMIT_REACHED, "Action already completed today"
            ) from exc
        # Reported once the flags are committed with the completion.
        for anomaly in flagged:
            ANOMALIES.labels(anomaly.kind).inc()
            log.warning(
                "score anomaly flagged",
                extra={
                    "anomaly": anomaly.kind,
                    "user_id": c.user_id,
                    "actor": c.actor,
                    "ledger_entry_id": response.ledger_entry_id,
                    "detail": anomaly.detail,
                },
            )
        return response

    async def _complete(
        self, conn: Conn, c: Completion
    ) -> tuple[pb.CompleteActionResponse, list[Anomaly]]:
        if c.idempotency_key:
            replay = await claim_key(conn, c.caller, c.idempotency_key, c.request_hash())
            if replay is not None:
                return replay, []
        display_name = await self._lock_score(conn, c.board_id, c.user_id)
        action, recent = await self._action_and_recent(conn, c.board_id, c.user_id, c.action_id)
        check_active(action)
        if action.requires_ticket or c.ticket:
            await redeem_ticket(
                conn,
                self._tickets,
                c.ticket,
                board=c.board_id,
                user_id=c.user_id,
                action_id=c.action_id,
                now=recent.now,
            )
        slot = check_limits(
            action,
            today_count=recent.action_today,
            last_completed=recent.action_last,
            now=recent.now,
        )
        points = action.points
        flagged = detect(self._anomalies, recent, action_id=c.action_id, points=points)
        cur = await conn.execute(
            _WRITE_SQL,
            {
                "board": c.board_id,
                "user": c.user_id,
                "action": c.action_id,
                "points": points,
                "day": recent.today,
                "slot": slot,
                "actor": c.actor,
                "path": c.path,
                "request_id": c.request_id or None,
            },
        )
        written = await cur.fetchone()
        assert written is not None
        ledger_id, committed, total, version, reached = written
        ledger_id, total, version = int(ledger_id), int(total), int(version)  # type: ignore[call-overload]
        assert isinstance(committed, datetime) and isinstance(reached, datetime)
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
            reached_time=_timestamp(reached),
        )
        response = pb.CompleteActionResponse(
            new_score=total,
            increment=points,
            rank=await self._ranks.rank_for(conn, c.board_id, total),
            message=COMPLETED_MESSAGE,
            version=version,
            commit_time=_timestamp(committed),
            ledger_entry_id=ledger_id,
        )
        params: dict[str, object] = {
            "board": c.board_id,
            "payload": event.SerializeToString(),
            "channel": NOTIFY_CHANNEL,
        }
        if c.idempotency_key:
            params.update(
                response=response.SerializeToString(), caller=c.caller, key=c.idempotency_key
            )
        await conn.execute(_OUTBOX_AND_KEY_SQL if c.idempotency_key else _OUTBOX_SQL, params)
        await record_anomalies(conn, c.board_id, c.user_id, ledger_id, flagged)
        return response, flagged

    async def _action_and_recent(
        self, conn: Conn, board: str, user_id: str, action_id: str
    ) -> tuple[CatalogAction, Recent]:
        cur = await conn.execute(
            _ACTION_AND_RECENT_SQL,
            {
                "action": action_id,
                "board": board,
                "user": user_id,
                "min_gap": self._anomalies.min_seconds_between_completions,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        now, today = row[0], row[1]
        assert isinstance(now, datetime) and isinstance(today, date)
        recent = Recent(
            now=now,
            today=today,
            action_today=int(row[2]),  # type: ignore[call-overload]
            action_last=_opt_time(row[3]),
            points_today=int(row[4]),  # type: ignore[call-overload]
            last_any=_opt_time(row[5]),
            last_any_action=str(row[6]) if row[6] is not None else None,
        )
        if row[7] is None:
            raise invalid(f"Unknown action: {action_id}", Reason.ACTION_NOT_FOUND)
        return CatalogAction.from_row(row[7:]), recent

    async def _lock_score(self, conn: Conn, board: str, user_id: str) -> str:
        """Lock the user's score row (creating it at 0 on the first completion); return the
        user's display name. Banned users are refused.

        FOR SHARE OF u: a completion waiting behind a ban must re-read users.banned once the ban
        commits (a joined row that is not locked keeps its stale value). Lock order: the score
        row, then the user row, everywhere."""
        lock = (
            "SELECT u.display_name, u.banned FROM user_scores s"
            " JOIN users u ON u.id = s.user_id"
            " WHERE s.board_id = %s AND s.user_id = %s FOR UPDATE OF s FOR SHARE OF u"
        )
        cur = await conn.execute(lock, (board, user_id))
        row = await cur.fetchone()
        if row is None:
            try:
                await conn.execute(
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
        if row[1]:
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED, Reason.USER_BANNED, "this user is banned"
            )
        return str(row[0])

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
            action, recent = await self._action_and_recent(conn, board, user_id, action_id)
            check_completion(
                action,
                today_count=recent.action_today,
                last_completed=recent.action_last,
                now=recent.now + timedelta(seconds=action.min_duration_seconds),
            )
            issued = await issue_ticket(
                conn,
                self._tickets,
                board=board,
                user_id=user_id,
                action_id=action_id,
                min_duration_seconds=action.min_duration_seconds,
                ttl_seconds=ttl_seconds,
            )
        return pb.StartActionResponse(
            ticket=issued.ticket,
            not_before_time=_timestamp(issued.not_before),
            expire_time=_timestamp(issued.expires_at),
        )
