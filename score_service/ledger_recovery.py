"""When the score transaction fails (DESIGN decision 13): which failures may simply be run again,
and what to do when a COMMIT's outcome is unknown.

A transaction that failed before COMMIT was sent, or whose COMMIT the server refused (a
serialization failure, a deadlock, a constraint), was rolled back: running it again is safe.
A connection lost while COMMIT was in flight leaves the outcome unknown: the transaction may
have committed. Such a completion is never run again blindly: every completion carries an
identity (Completion.completion_id) recorded, unique, in its ledger row, so on a fresh
connection the ledger says which ones landed; those are answered from their rows, the others
are written again. Should a transaction still in flight commit after that look-up, the unique
index refuses the second row, and the look-up is made again.

PostgreSQL unreachable is a passing fault: UNAVAILABLE with a retry_after, one warning line at
most every LOG_EVERY_SECONDS (and a metric), never a stack trace per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from enum import Enum

import psycopg
import psycopg_pool
from prometheus_client import Counter

from common.db import Pool
from common.errors import ServiceError, unavailable
from common.logs import Throttle
from score_service.ledger_rows import LandedRow, decode_landed
from score_service.ledger_sql import LANDED_SQL
from score_service.ranks import RankOf, RankReader

log = logging.getLogger("scoreboard.score")

# The constraint that refuses a second ledger row for one completion (migration 0008).
COMPLETION_INDEX = "user_actions_completion"
LOG_EVERY_SECONDS = 10.0
# Attempts of a transaction whose connection failed before COMMIT (nothing was written: safe
# to run again), while the deadline allows: a pool may hold several connections that died at
# once (a failover, terminated backends), each found out only when used.
ATTEMPTS = 10
_BACKOFF_SECONDS = 0.02
_MAX_BACKOFF_SECONDS = 0.25
# The wait for a connection of a completion that has no deadline (not one from a gRPC call).
NO_DEADLINE_WAIT_SECONDS = 30.0

UNAVAILABLE_TOTAL = Counter(
    "scoreboard_score_database_unavailable_total",
    "Score transactions that failed because PostgreSQL could not be reached or the connection"
    " was lost.",
)
COMMIT_UNKNOWN_TOTAL = Counter(
    "scoreboard_score_commit_unknown_total",
    "Completions whose COMMIT outcome was unknown, by what the ledger said afterwards:"
    " landed, not_landed (written again) or unknown (the look-up failed: UNAVAILABLE).",
    ["outcome"],
)


class CommitUnknown(Exception):
    """The connection failed while COMMIT was in flight: the transaction may have committed."""


class Failure(Enum):
    # Rolled back by the server, a lock conflict or a constraint: safe to run again.
    CONFLICT = "conflict"
    # A second row for a completion already in the ledger: look it up.
    LANDED_BEFORE = "landed_before"
    # No connection, or the connection was lost before COMMIT: nothing was written.
    UNREACHABLE = "unreachable"
    # Anything else is a bug.
    OTHER = "other"


def commit_refused(exc: BaseException) -> bool:
    """Whether an error raised by COMMIT is the server's answer that it rolled back (class 40,
    transaction rollback, or class 23, a deferred constraint). Anything else leaves the outcome
    unknown."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in ("40", "23")


def classify(exc: psycopg.Error) -> Failure:
    """What a failure of the score transaction (raised before COMMIT, or a COMMIT refused by
    the server) means."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        if exc.diag.constraint_name == COMPLETION_INDEX:
            return Failure.LANDED_BEFORE
        return Failure.CONFLICT
    if isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
        return Failure.CONFLICT
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return Failure.UNREACHABLE
    return Failure.OTHER


def no_connection(exc: BaseException) -> bool:
    """No connection could be had within the wait: trying again within the deadline is
    pointless."""
    return isinstance(exc, psycopg_pool.PoolTimeout | psycopg_pool.TooManyRequests)


def wait_for_connection(deadline: float) -> float:
    """How long to wait for a pooled connection so that an outage is answered (UNAVAILABLE)
    before the caller's deadline: what is left, less a tenth of it (at least 50 ms)."""
    if math.isinf(deadline):
        return NO_DEADLINE_WAIT_SECONDS
    left = deadline - time.monotonic()
    return max(0.01, left - max(0.05, left / 10))


def _pause(attempt: int) -> float:
    """The first retry at once (the usual failure is a pooled connection that died while idle;
    the next one may be alive), then growing slowly: a transaction slot waits meanwhile."""
    if attempt <= 1:
        return 0.0
    pause: float = _BACKOFF_SECONDS * 2 ** (attempt - 2)
    return min(_MAX_BACKOFF_SECONDS, pause)


def backoff(attempt: int, deadline: float) -> float | None:
    """The pause before attempt `attempt` (1, 2, ...), or None when there is no time left."""
    pause = _pause(attempt)
    if attempt >= ATTEMPTS or time.monotonic() + pause + 0.1 >= deadline:
        return None
    return pause


class OutageLog:
    """One warning line at most every LOG_EVERY_SECONDS while PostgreSQL fails, with how many
    failures it stands for; every failure is counted in the metric."""

    def __init__(self) -> None:
        self._warnings = Throttle(LOG_EVERY_SECONDS)
        self._since = 0

    def note(self, exc: BaseException) -> None:
        UNAVAILABLE_TOTAL.inc()
        self._since += 1
        if not self._warnings.due():
            return
        log.warning(
            "PostgreSQL unavailable: %s: %s (%d failure(s) since the last warning)",
            type(exc).__name__,
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            self._since,
        )
        self._since = 0


def unreachable() -> ServiceError:
    return unavailable("the score database is unavailable; retry")


def outcome_unknown() -> ServiceError:
    return unavailable(
        "the score database became unavailable while this completion was committed; it was"
        " counted at most once; retry with the same idempotency key to learn its result"
    )


async def find_landed(
    pool: Pool,
    ranks: RankReader,
    board: str,
    completion_ids: Sequence[str],
    deadline: float,
    outage: OutageLog,
) -> dict[str, list[tuple[LandedRow, int]]]:
    """The completions among `completion_ids` that are in the ledger, each with its row on
    every board it counted on and the rank of the total it reached there (read now), looked
    up on a fresh connection and tried again until `deadline`. Raises UNAVAILABLE (outcome
    unknown) when the ledger cannot be read in time."""
    attempt = 0
    while True:
        attempt += 1
        try:
            async with (
                pool.connection(timeout=wait_for_connection(deadline)) as conn,
                conn.transaction(),
            ):
                cur = await conn.execute(LANDED_SQL, (list(completion_ids),))
                landed = decode_landed(await cur.fetchall())
                found = [(cid, row) for cid, rows in landed.items() for row in rows]
                read = await ranks.ranks_of(
                    conn, [RankOf(r.board_id, r.period, r.asc, r.total) for _, r in found]
                )
        except psycopg.Error as exc:
            outage.note(exc)
            pause = _pause(attempt)
            if no_connection(exc) or time.monotonic() + pause + 0.05 >= deadline:
                COMMIT_UNKNOWN_TOTAL.labels("unknown").inc(len(completion_ids))
                raise outcome_unknown() from None
            await asyncio.sleep(pause)
            continue
        COMMIT_UNKNOWN_TOTAL.labels("landed").inc(len(landed))
        COMMIT_UNKNOWN_TOTAL.labels("not_landed").inc(len(completion_ids) - len(landed))
        result: dict[str, list[tuple[LandedRow, int]]] = {}
        for (cid, row), rank in zip(found, read, strict=True):
            result.setdefault(cid, []).append((row, rank))
        return result
