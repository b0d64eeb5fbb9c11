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
from score_service.idempotency import claim_key, store_response
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

# One read of a user's recent completions (the user's row is locked): today's count and the last
# completion of this action, today's points and the last completion of any action. Bounded to
# the user's last day by the user_actions_user_recent index (a cooldown is at most a day).
_RECENT_SQL = (
    "SELECT clock_timestamp(), (now() AT TIME ZONE 'UTC')::date,"
    " count(*) FILTER (WHERE action_id = %(action)s"
    "   AND day = (now() AT TIME ZONE 'UTC')::date),"
    " max(created_at) FILTER (WHERE action_id = %(action)s),"
    " coalesce(sum(points) FILTER (WHERE day = (now() AT TIME ZONE 'UTC')::date), 0),"
    " max(created_at),"
    " (array_agg(action_id ORDER BY created_at DESC, id DESC))[1]"
    " FROM user_actions"
    " WHERE board_id = %(board)s AND user_id = %(user)s AND kind = 'action'"
    " AND created_at >= least("
    "   date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
    "   clock_timestamp() - make_interval(secs => %(window)s))"
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
            # Pipeline mode: statements whose results are not needed at once (BEGIN, the outbox
            # row, NOTIFY, anomaly flags, the stored response, COMMIT) travel together.
            async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
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
        action = await self._action(conn, c.action_id, c.board_id)
        display_name = await self._lock_score(conn, c.board_id, c.user_id)
        recent = await self._recent(conn, c.board_id, c.user_id, action)
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
        await conn.execute(
            "INSERT INTO outbox (board_id, payload) VALUES (%s, %s)",
            (c.board_id, event.SerializeToString()),
        )
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, c.board_id))
        await record_anomalies(conn, c.board_id, c.user_id, ledger_id, flagged)
        response = pb.CompleteActionResponse(
            new_score=total,
            increment=points,
            rank=await self._ranks.rank_for(conn, c.board_id, total),
            message=COMPLETED_MESSAGE,
            version=version,
            commit_time=_timestamp(committed),
            ledger_entry_id=ledger_id,
        )
        if c.idempotency_key:
            await store_response(conn, c.caller, c.idempotency_key, response)
        return response, flagged

    async def _recent(self, conn: Conn, board: str, user_id: str, action: CatalogAction) -> Recent:
        window = max(
            float(action.cooldown_seconds), self._anomalies.min_seconds_between_completions
        )
        cur = await conn.execute(
            _RECENT_SQL,
            {"action": action.action_id, "board": board, "user": user_id, "window": window},
        )
        row = await cur.fetchone()
        assert row is not None
        now, today = row[0], row[1]
        assert isinstance(now, datetime) and isinstance(today, date)
        return Recent(
            now=now,
            today=today,
            action_today=int(row[2]),  # type: ignore[call-overload]
            action_last=_opt_time(row[3]),
            points_today=int(row[4]),  # type: ignore[call-overload]
            last_any=_opt_time(row[5]),
            last_any_action=str(row[6]) if row[6] is not None else None,
        )

    async def _action(self, conn: Conn, action_id: str, board: str) -> CatalogAction:
        cur = await conn.execute(
            f"SELECT {COLUMNS} FROM actions WHERE id = %s AND board_id = %s", (action_id, board)
        )
        row = await cur.fetchone()
        if row is None:
            raise invalid(f"Unknown action: {action_id}", Reason.ACTION_NOT_FOUND)
        return CatalogAction.from_row(row)

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
                # A nested pipeline block syncs on exit, so an error surfaces here.
                async with conn.pipeline():
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
            action = await self._action(conn, action_id, board)
            check_active(action)
            cur = await conn.execute("SELECT banned FROM users WHERE id = %s", (user_id,))
            user = await cur.fetchone()
            if user is None:
                raise not_found(Reason.USER_NOT_FOUND, "no such user")
            if user[0]:
                raise ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED, Reason.USER_BANNED, "this user is banned"
                )
            recent = await self._recent(conn, board, user_id, action)
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
