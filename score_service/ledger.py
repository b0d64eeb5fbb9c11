"""The score transaction (DESIGN decisions 1-3): the ledger rows, the new totals and versions,
the counters the rules read, the outbox rows and any anomaly flags, in one PostgreSQL
transaction.

Group commit: completions that arrive while earlier ones are being written share the next
transaction (score_service.group_commit). A transaction runs the steps of one completion, each
set-based over the whole group: claim the idempotency keys, lock the users' score rows, read the
actions, the users' counters and the clock, check every completion in arrival order against
counters kept running in memory, then write all ledger rows, totals, counters, outbox rows,
stored responses and flags, and commit once. Under light load a group holds one completion;
under heavy load the round trips are shared by everyone waiting, which is what lets one process
take thousands of completions a second.

Concurrency: a pessimistic row lock plus absolute writes under it, not optimistic retries. The
users' user_scores rows are locked (SELECT ... FOR UPDATE, in user-id order so two transactions
never deadlock) before any rule is checked, so completions of one user run one after another
and the daily limit, the cooldown and the anomaly checks are exact. An optimistic version check
would only turn the same contention into failed attempts and retries (50 identical requests:
49 retry loops), and the rules would still need a lock or SERIALIZABLE to be exact. The unique
(user, action, day, slot) index makes PostgreSQL itself refuse a completion past the limit,
whatever the code above it does.

The rules read counters, not the ledger: action_stats (per user and action: completions today,
last completion) and user_scores.day_points / last_action_at (per user), kept in the same
transaction. A completion costs the same however often the user played before.

This module holds the transaction alone: its statements are score_service.ledger_sql, their
rows are decoded by score_service.ledger_rows, the outbox rows and their notification are
score_service.outbox's, and StartAction (issuing a ticket) is score_service.tickets.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

import grpc
import orjson
import psycopg
from prometheus_client import Counter

from common.boards import Clock, system_clock
from common.db import Conn, Pool
from common.errors import Reason, ServiceError, invalid, not_found, precondition
from common.timestamps import timestamp_pb
from score_service import ledger_recovery as recovery
from score_service import outbox
from score_service.anomalies import Anomaly, Recent, detect
from score_service.catalog import CatalogAction
from score_service.config import AnomalySettings, GroupCommitSettings
from score_service.group_commit import GroupCommit, Outcome
from score_service.idempotency import claim_keys, stored_response
from score_service.ledger_boards import OpenBoard, Target, check_value, new_total, targets
from score_service.ledger_rows import (
    ActionStat,
    LandedRow,
    LockedUser,
    RowKey,
    decode_boards,
    decode_context,
    decode_stats,
    decode_users,
    decode_written,
    result_sets,
)
from score_service.ledger_sql import (
    BOARDS_SQL,
    CREATE_SQL,
    FINISH_SQL,
    LOCKED_READ_SQL,
    WRITE_SQL,
)
from score_service.ranks import RankOf, RankReader
from score_service.rules import check_active, check_limits
from score_service.tickets import TicketSigner, check_ticket, use_ticket
from scoreboard.events.v1 import events_pb2
from scoreboard.score.v1 import score_service_pb2 as pb

__all__ = ["COMPLETED_MESSAGE", "Completion", "Ledger"]

COMPLETED_MESSAGE = "Action completed successfully"

log = logging.getLogger("scoreboard.score")

ANOMALIES = Counter(
    "scoreboard_score_anomalies_total", "Completions flagged for admins, by kind.", ["kind"]
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
    # Its identity, recorded in its ledger row: a completion whose COMMIT outcome is unknown is
    # looked up by it, never written twice (ledger_recovery).
    completion_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # time.monotonic() when its caller stops waiting: it is not written after that unless its
    # transaction had started (group_commit), and an outage is answered before it.
    deadline: float = math.inf
    # A value for the action's best/latest boards, from a trusted caller (the servicer checks
    # who may report one; the transaction checks the boards' bounds).
    value: int | None = None

    def request_hash(self) -> bytes:
        parts = [self.board_id, self.user_id, self.action_id, self.ticket]
        if self.value is not None:
            parts.append(f"value={self.value}")
        return hashlib.sha256("\x1f".join(parts).encode()).digest()


@dataclass
class _Write:
    """What an accepted completion writes on one board: its ledger row's points (the change of
    the total), the new total and version, and the value recorded (best/latest boards)."""

    target: Target
    points: int
    total: int
    version: int
    value: int | None
    ledger_id: int = 0
    committed: datetime | None = None
    reached: datetime | None = None


@dataclass
class _Accepted:
    index: int
    completion: Completion
    points: int
    slot: int
    display_name: str
    flagged: list[Anomaly]
    # The catalog board's write first, then the further boards'.
    writes: list[_Write] = field(default_factory=list)
    response: pb.CompleteActionResponse = field(default_factory=pb.CompleteActionResponse)

    def key(self, write: _Write) -> RowKey:
        return (write.target.board_id, write.target.period, self.completion.user_id)


def _response(
    board: str, rows: list[tuple[str, int, int, int, int, int, int]], committed: datetime
) -> pb.CompleteActionResponse:
    """A completion's answer from its rows, the catalog board's first: (board, period, total,
    points, rank, version, ledger entry id) each."""
    _, period, total, points, rank, version, ledger_id = rows[0]
    return pb.CompleteActionResponse(
        new_score=total,
        increment=points,
        rank=rank,
        message=COMPLETED_MESSAGE,
        version=version,
        commit_time=timestamp_pb(committed),
        ledger_entry_id=ledger_id,
        board_id=board,
        period=period,
        other_boards=[
            pb.BoardResult(
                board_id=b,
                period=p,
                new_score=t,
                increment=d,
                rank=r,
                version=v,
                ledger_entry_id=e,
            )
            for b, p, t, d, r, v, e in rows[1:]
        ],
    )


def _landed_outcome(board: str, found: list[tuple[LandedRow, int]]) -> Outcome:
    """The answer of a completion found in the ledger after its COMMIT's outcome was unknown:
    what its transaction would have answered (the ranks are read now)."""
    found = sorted(found, key=lambda item: (item[0].board_id != board, item[0].ledger_id))
    rows = [
        (r.board_id, r.period, r.total, r.points, rank, r.version, r.ledger_id) for r, rank in found
    ]
    first = found[0][0]
    flags = [Anomaly(kind, detail) for r, _ in found for kind, detail in r.flags]
    return _response(first.board_id, rows, first.committed), flags


class Ledger:
    def __init__(
        self,
        pool: Pool,
        ranks: RankReader,
        tickets: TicketSigner,
        anomalies: AnomalySettings | None = None,
        group: GroupCommitSettings | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._pool = pool
        # The clock a completion's periods are found at (common.boards.CURRENT_PERIOD_SQL).
        self._clock = clock
        self._ranks = ranks
        self._tickets = tickets
        self._anomalies = anomalies or AnomalySettings()
        self._group = GroupCommit(self._complete_group, group or GroupCommitSettings())
        self._outage = recovery.OutageLog()

    async def complete(self, c: Completion) -> pb.CompleteActionResponse:
        deadline = None if math.isinf(c.deadline) else c.deadline
        response, flagged = await self._group.submit(c.board_id, c, deadline=deadline)
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

    async def _complete_group(
        self, group: Sequence[Completion]
    ) -> list[Outcome | BaseException | None]:
        """Every completion's outcome: a response, a refusal, or None to submit again (its
        idempotency key is held by a request that has not committed yet, or it was not written
        by a transaction whose COMMIT outcome was unknown).

        Only a transaction known to be rolled back is run again; one whose COMMIT outcome is
        unknown is looked up in the ledger by its completions' identities (ledger_recovery)."""
        deadline = min(c.deadline for c in group)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(group)
            except recovery.CommitUnknown as unknown:
                self._outage.note(unknown.__cause__ or unknown)
                return await self._recover(group)
            except psycopg.Error as exc:
                failure = recovery.classify(exc)
                if failure is recovery.Failure.LANDED_BEFORE:
                    # A transaction whose outcome was unknown committed after the look-up.
                    return await self._recover(group)
                if failure is recovery.Failure.UNREACHABLE:
                    self._outage.note(exc)
                    pause = (
                        None if recovery.no_connection(exc) else recovery.backoff(attempt, deadline)
                    )
                    if pause is None:
                        return [recovery.unreachable()] * len(group)
                    await asyncio.sleep(pause)  # nothing was written: run it again
                    continue
                return await self._after_conflict(group, exc)

    async def _after_conflict(
        self, group: Sequence[Completion], exc: psycopg.Error
    ) -> list[Outcome | BaseException | None]:
        """A transaction the server rolled back (a constraint, a deadlock, a bug)."""
        if len(group) > 1:
            # One completion may have broken the group (a constraint, a deadlock with an admin
            # act): each is tried on its own, so it cannot fail the others.
            log.info("group of %d failed (%s); retrying one by one", len(group), exc)
            return [(await self._complete_group([c]))[0] for c in group]
        if isinstance(exc, psycopg.errors.UniqueViolation):
            # Only reachable if the rules were bypassed: the slot index refused it.
            return [precondition(Reason.DAILY_LIMIT_REACHED, "Action already completed today")]
        if recovery.classify(exc) is recovery.Failure.CONFLICT:
            return [None]  # a deadlock or serialization failure: submit it again
        return [exc]

    async def _recover(self, group: Sequence[Completion]) -> list[Outcome | BaseException | None]:
        """After a COMMIT whose outcome is unknown: the completions that landed are answered
        from the ledger, the others are submitted again (their deadlines decide whether they
        are still written)."""
        board = group[0].board_id
        try:
            landed = await recovery.find_landed(
                self._pool,
                self._ranks,
                board,
                [c.completion_id for c in group],
                max(c.deadline for c in group),
                self._outage,
            )
        except ServiceError as error:
            log.warning("outcome of %d completion(s) unknown: %s", len(group), error.message)
            return [error] * len(group)
        results: list[Outcome | BaseException | None] = []
        for c in group:
            found = landed.get(c.completion_id)
            results.append(None if not found else _landed_outcome(board, found))
        return results

    async def _attempt(self, group: Sequence[Completion]) -> list[Outcome | BaseException | None]:
        board = group[0].board_id
        results: list[Outcome | BaseException | None] = [None] * len(group)
        retry: set[int] = set()
        deadline = min(c.deadline for c in group)
        async with self._pool.connection(timeout=recovery.wait_for_connection(deadline)) as conn:
            written = False
            try:
                async with conn.transaction():
                    accepted = await self._body(conn, board, group, results, retry)
                    written = True
            except psycopg.Error as exc:
                if written and not recovery.commit_refused(exc):
                    raise recovery.CommitUnknown(str(exc)) from exc
                raise
        for item in accepted:
            results[item.index] = (item.response, item.flagged)
        # None left: submit again (the key's twin commits first).
        return results

    async def _body(
        self,
        conn: Conn,
        board: str,
        group: Sequence[Completion],
        results: list[Outcome | BaseException | None],
        retry: set[int],
    ) -> list[_Accepted]:
        """The transaction's statements, up to (not including) its COMMIT."""
        claimed = await self._claim(conn, group, results, retry)
        active = [i for i in range(len(group)) if results[i] is None and i not in retry]
        accepted: list[_Accepted] = []
        created: set[RowKey] = set()
        if active:
            accepted, users, created, day = await self._check(conn, board, group, active, results)
        refused_keys = [
            (group[i].caller, group[i].idempotency_key)
            for i in claimed
            if isinstance(results[i], BaseException)
        ]
        if accepted:
            await self._write(conn, board, accepted, users, day)
        written = {a.key(w) for a in accepted for w in a.writes}
        unused = sorted(created - written)
        await self._finish(conn, board, accepted, refused_keys, unused)
        return accepted

    async def _claim(
        self,
        conn: Conn,
        group: Sequence[Completion],
        results: list[Outcome | BaseException | None],
        retry: set[int],
    ) -> list[int]:
        """Claim the idempotency keys; replay or refuse what was claimed before. Returns the
        indexes of the completions whose key this transaction claimed."""
        keyed = [i for i, c in enumerate(group) if c.idempotency_key]
        if not keyed:
            return []
        requests = [
            (group[i].caller, group[i].idempotency_key, group[i].request_hash()) for i in keyed
        ]
        won = await claim_keys(conn, requests)
        claimed: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i in keyed:
            c = group[i]
            pair = (c.caller, c.idempotency_key)
            if pair in won and pair not in seen:
                seen.add(pair)
                claimed.append(i)
                continue
            try:
                replay = await stored_response(conn, c.caller, c.idempotency_key, c.request_hash())
            except ServiceError as error:
                results[i] = error
                continue
            if replay is None:
                retry.add(i)  # its twin commits first (in this group or another)
            else:
                results[i] = (replay, [])
        return claimed

    async def _boards(
        self, conn: Conn, board: str, action_ids: list[str]
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, OpenBoard]]:
        """Each action's further boards and every board the group counts on, with its period
        open now locked FOR SHARE. A board whose period was just ended by hand is read again
        once: the statement's snapshot may predate the next period's row."""
        params = {"board": board, "actions": action_ids, "at": self._clock()}
        action_rows, board_rows = await result_sets(conn, BOARDS_SQL, params)
        further, boards = decode_boards(action_rows, board_rows)
        if any(b.period is None for b in boards.values()):
            action_rows, board_rows = await result_sets(conn, BOARDS_SQL, params)
            further, boards = decode_boards(action_rows, board_rows)
        return further, boards

    async def _check(
        self,
        conn: Conn,
        board: str,
        group: Sequence[Completion],
        active: list[int],
        results: list[Outcome | BaseException | None],
    ) -> tuple[list[_Accepted], dict[RowKey, LockedUser], set[RowKey], date]:
        """Lock the periods and the users' score rows on every board the completions count on,
        read actions and counters, and check each completion in order."""
        chosen = [group[i] for i in active]
        further, boards = await self._boards(conn, board, sorted({c.action_id for c in chosen}))
        own = boards.get(board)
        if own is None or own.period is None:
            refusal = precondition(Reason.NO_OPEN_PERIOD, f"board {board} has no open period")
            for i in active:
                results[i] = refusal
            return [], {}, set(), date.min
        rows: set[RowKey] = set()
        for c in chosen:
            for b in (board, *further.get(c.action_id, ())):
                period = boards[b].period if b in boards else None
                if period is not None:
                    rows.add((b, period, c.user_id))
        users, created, actions, now, today, stats = await self._read(
            conn,
            board,
            sorted(rows, key=lambda r: (r[2], r[0], r[1])),
            sorted({c.action_id for c in chosen}),
            sorted({(c.user_id, c.action_id) for c in chosen}),
        )
        accepted: list[_Accepted] = []
        for i in active:
            c = group[i]
            try:
                user = users.get((board, own.period, c.user_id))
                if user is None:
                    raise not_found(Reason.USER_NOT_FOUND, "no such user")
                if user.banned:
                    raise ServiceError(
                        grpc.StatusCode.PERMISSION_DENIED, Reason.USER_BANNED, "this user is banned"
                    )
                found = actions.get(c.action_id)
                if found is None:
                    raise invalid(f"Unknown action: {c.action_id}", Reason.ACTION_NOT_FOUND)
                # The boards locked above (an admin may change the list meanwhile).
                action = replace(found, boards=further.get(c.action_id, ()))
                check_active(action)
                check_value(action, c.value, boards, board)
                stat = stats.get((c.user_id, c.action_id))
                today_count = stat.day_count if stat is not None and stat.day == today else 0
                last = stat.last_at if stat is not None else None
                ticket_id = None
                if action.requires_ticket or c.ticket:
                    # Checked before the limits: a reused ticket says TICKET_USED.
                    ticket_id = await check_ticket(
                        conn,
                        self._tickets,
                        c.ticket,
                        board=board,
                        user_id=c.user_id,
                        action_id=c.action_id,
                        now=now,
                    )
                slot = check_limits(action, today_count=today_count, last_completed=last, now=now)
                if ticket_id is not None:
                    await use_ticket(conn, ticket_id, now)
            except ServiceError as error:
                results[i] = error
                continue
            points = action.points
            recent = Recent(
                now=now,
                today=today,
                action_today=today_count,
                action_last=last,
                points_today=user.points_on(today),
                last_any=user.last_action_at,
                last_any_action=user.last_action_id,
            )
            flagged = detect(self._anomalies, recent, action_id=c.action_id, points=points)
            item = _Accepted(i, c, points, slot, user.display_name, flagged)
            for target in targets(action, board, boards):
                row = users[(target.board_id, target.period, c.user_id)]
                total = new_total(
                    target, total=row.total, version=row.version, points=points, value=c.value
                )
                value = None if target.combine == "sum" else c.value
                item.writes.append(_Write(target, total - row.total, total, row.version + 1, value))
                row.total, row.version = total, row.version + 1
            user.day_points = user.points_on(today) + points
            user.day = today
            user.last_action_at = now
            user.last_action_id = c.action_id
            stats[(c.user_id, c.action_id)] = ActionStat(today, today_count + 1, now)
            accepted.append(item)
        return accepted, users, created, today

    async def _write(
        self,
        conn: Conn,
        board: str,
        accepted: list[_Accepted],
        users: dict[RowKey, LockedUser],
        day: date,
    ) -> None:
        """Ledger rows, totals and counters in one statement; the ranks are read from Redis
        meanwhile (they depend only on the new totals)."""
        rows = [(a, w) for a in accepted for w in a.writes]
        last_row: dict[RowKey, _Write] = {}
        last_pair: dict[tuple[str, str], _Accepted] = {}
        for a, w in rows:
            last_row[a.key(w)] = w
        for item in accepted:
            last_pair[(item.completion.user_id, item.completion.action_id)] = item
        action_of = {a.key(w): a.completion.action_id for a, w in rows}
        asked = [RankOf(w.target.board_id, w.target.period, w.target.asc, w.total) for _, w in rows]
        ranking = asyncio.ensure_future(self._ranks.ranks_of(conn, asked))
        try:
            cur = await conn.execute(
                WRITE_SQL,
                {
                    "board": board,
                    "day": day,
                    "boards": [w.target.board_id for _, w in rows],
                    "periods": [w.target.period for _, w in rows],
                    "users": [a.completion.user_id for a, _ in rows],
                    "actions": [a.completion.action_id for a, _ in rows],
                    "points": [w.points for _, w in rows],
                    "values": [w.value for _, w in rows],
                    "slots": [a.slot for a, _ in rows],
                    "actors": [a.completion.actor for a, _ in rows],
                    "paths": [a.completion.path for a, _ in rows],
                    "request_ids": [a.completion.request_id or None for a, _ in rows],
                    "completion_ids": [a.completion.completion_id for a, _ in rows],
                    "u_boards": [k[0] for k in last_row],
                    "u_periods": [k[1] for k in last_row],
                    "u_users": [k[2] for k in last_row],
                    "u_totals": [w.total for w in last_row.values()],
                    "u_versions": [w.version for w in last_row.values()],
                    "u_day_points": [users[k].day_points for k in last_row],
                    "u_last_action": [action_of[k] for k in last_row],
                    "s_users": [u for u, _ in last_pair],
                    "s_actions": [a for _, a in last_pair],
                    "s_counts": [item.slot for item in last_pair.values()],
                },
            )
            written = decode_written(await cur.fetchall())
        finally:
            ranks = await ranking
        # When each total was reached (as the statement computed it), for the events.
        reached: dict[RowKey, datetime] = {k: s.reached_at for k, s in users.items()}
        for a, w in rows:
            c = a.completion
            w.ledger_id, w.committed = written[(w.target.board_id, c.user_id, c.action_id, a.slot)]
            if w.points != 0:
                reached[a.key(w)] = w.committed
            w.reached = reached[a.key(w)]
        rank_of = {id(w): rank for (_, w), rank in zip(rows, ranks, strict=True)}
        for item in accepted:
            first = item.writes[0]
            assert first.committed is not None
            item.response = _response(
                board,
                [
                    (
                        w.target.board_id,
                        w.target.period,
                        w.total,
                        w.points,
                        rank_of[id(w)],
                        w.version,
                        w.ledger_id,
                    )
                    for w in item.writes
                ],
                first.committed,
            )

    async def _finish(
        self,
        conn: Conn,
        board: str,
        accepted: list[_Accepted],
        refused_keys: list[tuple[str, str]],
        unused_rows: list[RowKey],
    ) -> None:
        if not accepted and not refused_keys and not unused_rows:
            return
        keyed = [a for a in accepted if a.completion.idempotency_key]
        flags = [(a, f) for a in accepted for f in a.flagged]
        await conn.execute(
            FINISH_SQL,
            {
                **outbox.boards_params([self._event(a, w) for a in accepted for w in a.writes]),
                "board": board,
                "k_callers": [a.completion.caller for a in keyed],
                "k_keys": [a.completion.idempotency_key for a in keyed],
                "k_responses": [a.response.SerializeToString() for a in keyed],
                "d_callers": [caller for caller, _ in refused_keys],
                "d_keys": [key for _, key in refused_keys],
                "a_users": [a.completion.user_id for a, _ in flags],
                "a_kinds": [f.kind for _, f in flags],
                "a_details": [orjson.dumps(f.detail).decode() for _, f in flags],
                "a_entries": [a.writes[0].ledger_id for a, _ in flags],
                "r_boards": [r[0] for r in unused_rows],
                "r_periods": [r[1] for r in unused_rows],
                "r_users": [r[2] for r in unused_rows],
            },
        )

    @staticmethod
    def _event(item: _Accepted, write: _Write) -> events_pb2.ScoreUpdated:
        c = item.completion
        assert write.committed is not None and write.reached is not None
        return outbox.score_event(
            board=write.target.board_id,
            period=write.target.period,
            user_id=c.user_id,
            display_name=item.display_name,
            ledger_id=write.ledger_id,
            total=write.total,
            increment=write.points,
            version=write.version,
            committed=write.committed,
            reached=write.reached,
            action_id=c.action_id,
        )

    async def _read(
        self,
        conn: Conn,
        board: str,
        rows: list[RowKey],
        action_ids: list[str],
        pairs: list[tuple[str, str]],
    ) -> tuple[
        dict[RowKey, LockedUser],
        set[RowKey],
        dict[str, CatalogAction],
        datetime,
        date,
        dict[tuple[str, str], ActionStat],
    ]:
        """Lock the users' score rows on every board and period (creating missing ones), then
        read the actions, the clock and the counters: one round trip when every user has played
        in these periods before."""
        params = {
            "board": board,
            "l_boards": [r[0] for r in rows],
            "l_periods": [r[1] for r in rows],
            "l_users": [r[2] for r in rows],
            "actions": action_ids,
            "pair_users": [u for u, _ in pairs],
            "pair_actions": [a for _, a in pairs],
        }
        locked, context, counters = await result_sets(conn, LOCKED_READ_SQL, params)
        users = decode_users(locked)
        actions, now, today = decode_context(context)
        stats = decode_stats(counters)
        missing = [r for r in rows if r not in users]
        created: set[RowKey] = set()
        if missing:
            # First completions (in a period): the new rows are locked by this transaction; a
            # concurrent creator is waited for, so the context is read again afterwards.
            again = {
                **params,
                "l_boards": [r[0] for r in missing],
                "l_periods": [r[1] for r in missing],
                "l_users": [r[2] for r in missing],
            }
            inserted = await conn.execute(CREATE_SQL, again)
            created = {(str(r[0]), int(str(r[1])), str(r[2])) for r in await inserted.fetchall()}
            locked, context, counters = await result_sets(conn, LOCKED_READ_SQL, again)
            users.update(decode_users(locked))
            actions, now, today = decode_context(context)
            stats = decode_stats(counters)
        return users, created, actions, now, today, stats
