"""The transactional outbox (DESIGN decision 2): the one place that knows the outbox table's rows
and the channel that announces them.

A row (ops/migrations/0001_initial.sql, 0010) is (id, board_id, payload, created_at, kind): for
kind 'score' (the default) payload is a serialized scoreboard.events.v1.ScoreUpdated, published
on the board's event stream (field 'e'); for kind 'period_closed' it is a PeriodClosed, written by
leaderboard_service when it freezes a period and published on the board's period stream (field
'c'). board_id is the event's board. The writers
(the score transaction in score_service.ledger, admin acts in score_service.admin_store) insert
rows and NOTIFY CHANNEL with the board as payload, in their own transaction, so the
notification is delivered only if the rows commit. The relay (score_service.relay) LISTENs on
CHANNEL and takes rows with take().
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from common.db import Conn
from common.timestamps import timestamp_pb
from scoreboard.events.v1 import events_pb2

__all__ = [
    "CHANNEL",
    "INSERT_BOARDS_SQL",
    "INSERT_MANY_SQL",
    "NOTIFY_BOARDS_SQL",
    "NOTIFY_MANY_SQL",
    "PERIOD_CLOSED",
    "PERIOD_STREAM_MAX_LENGTH",
    "SCORE",
    "TAKE_SQL",
    "OutboxRow",
    "append",
    "batch_params",
    "boards_params",
    "decode",
    "encode",
    "score_event",
    "take",
]

# The LISTEN/NOTIFY channel; a notification's payload is the board id.
CHANNEL = "scoreboard_outbox"

_INSERT_SQL = "INSERT INTO outbox (board_id, payload) VALUES (%s, %s)"
_NOTIFY_SQL = "SELECT pg_notify(%s, %s)"

# Set-based, for a statement of the writer's own (a data-modifying CTE, then a final SELECT):
# the rows of one board and their notification, with the parameters batch_params() gives.
INSERT_MANY_SQL = (
    "INSERT INTO outbox (board_id, payload) SELECT %(board)s, unnest(%(payloads)s::bytea[])"
)
NOTIFY_MANY_SQL = "SELECT pg_notify(%(channel)s, %(board)s) WHERE %(notify)s"
# The same for events of several boards (one completion counting on several): each row names its
# board, and each board is notified once; parameters from boards_params().
INSERT_BOARDS_SQL = (
    "INSERT INTO outbox (board_id, payload) SELECT t.board_id, t.payload"
    " FROM unnest(%(o_boards)s::text[], %(payloads)s::bytea[]) WITH ORDINALITY"
    " AS t(board_id, payload, n) ORDER BY t.n"
)
NOTIFY_BOARDS_SQL = "SELECT pg_notify(%(channel)s, b) FROM unnest(%(notify_boards)s::text[]) AS b"

# The relay's take: the oldest rows no other relay holds, deleted by its transaction (so they
# leave the outbox only if it commits, after it published them). Its columns are what decode()
# reads; RETURNING keeps no order, take() sorts them.
TAKE_SQL = (
    "WITH c AS (SELECT id FROM outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " DELETE FROM outbox o USING c WHERE o.id = c.id"
    " RETURNING o.id, o.board_id, o.payload, o.kind"
)
SCORE = "score"
PERIOD_CLOSED = "period_closed"
# How many PeriodClosed events a board's period stream keeps (about).
PERIOD_STREAM_MAX_LENGTH = 10_000


@dataclass(frozen=True)
class OutboxRow:
    """A claimed row: the payload is published as it is (the stream's field 'e')."""

    id: int
    board_id: str
    payload: bytes
    kind: str = SCORE

    def event(self) -> events_pb2.ScoreUpdated:
        return events_pb2.ScoreUpdated.FromString(self.payload)


def encode(event: events_pb2.ScoreUpdated) -> bytes:
    """The payload of an event's row."""
    return event.SerializeToString()


def decode(row: Sequence[object]) -> OutboxRow:
    """A row as TAKE_SQL returns it."""
    row_id, board_id, payload, kind = row
    assert isinstance(row_id, int), row_id
    assert isinstance(payload, bytes | bytearray | memoryview), type(payload)
    return OutboxRow(row_id, str(board_id), bytes(payload), str(kind))


async def take(conn: Conn, limit: int) -> list[OutboxRow]:
    """Up to `limit` of the oldest rows no other transaction holds, in id order, deleted by the
    caller's transaction: they are gone only if it commits (a rollback puts them back)."""
    cur = await conn.execute(TAKE_SQL, (limit,))
    return sorted((decode(row) for row in await cur.fetchall()), key=lambda row: row.id)


def batch_params(board: str, events: Sequence[events_pb2.ScoreUpdated]) -> dict[str, object]:
    """The parameters of INSERT_MANY_SQL and NOTIFY_MANY_SQL for events of one board (no
    notification when there are none)."""
    return {
        "board": board,
        "payloads": [encode(event) for event in events],
        "channel": CHANNEL,
        "notify": bool(events),
    }


def score_event(
    *,
    board: str,
    period: int,
    user_id: str,
    display_name: str,
    ledger_id: int,
    total: int,
    increment: int,
    version: int,
    committed: datetime,
    reached: datetime,
    action_id: str = "",
    excluded: bool = False,
) -> events_pb2.ScoreUpdated:
    """The event of one ledger entry: the row's new state. Its id, `<board>:<ledger entry id>`,
    is what consumers deduplicate on."""
    return events_pb2.ScoreUpdated(
        event_id=f"{board}:{ledger_id}",
        board_id=board,
        user_id=user_id,
        display_name=display_name,
        total=total,
        increment=increment,
        version=version,
        action_id=action_id,
        ledger_entry_id=ledger_id,
        commit_time=timestamp_pb(committed),
        reached_time=timestamp_pb(reached),
        excluded=excluded,
        period=period,
    )


def boards_params(events: Sequence[events_pb2.ScoreUpdated]) -> dict[str, object]:
    """The parameters of INSERT_BOARDS_SQL and NOTIFY_BOARDS_SQL, events in order."""
    return {
        "o_boards": [event.board_id for event in events],
        "payloads": [encode(event) for event in events],
        "channel": CHANNEL,
        "notify_boards": sorted({event.board_id for event in events}),
    }


async def append(conn: Conn, event: events_pb2.ScoreUpdated) -> None:
    """One event's row and its notification, in the caller's transaction."""
    await conn.execute(_INSERT_SQL, (event.board_id, encode(event)))
    await conn.execute(_NOTIFY_SQL, (CHANNEL, event.board_id))
