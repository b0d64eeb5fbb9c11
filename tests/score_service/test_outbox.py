"""The outbox contract (score_service.outbox) against real PostgreSQL and Redis: what the score
transaction and the admin acts write is read back by the relay's decoder as the exact
ScoreUpdated event of each ledger row, the relay publishes it unchanged, and the writers notify
the channel the relay listens on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import cast

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg.rows import TupleRow

from common.config import DEFAULT_BOARD
from common.db import Pool
from score_service import outbox
from score_service.admin_store import Act, AdminStore
from score_service.config import RelaySettings
from score_service.relay import OutboxRelay
from scoreboard.events.v1 import events_pb2
from tests.conftest import StackFactory
from tests.score_service.helpers import (
    create_action,
    game_token,
    insert_users,
    outbox_count,
    score_client,
    stream_events,
)
from tests.support.servers import wait_for
from tests.support.stack import Stack

NO_RELAY = {"relay": RelaySettings(enabled=False)}
BOUND = 30.0  # seconds; only a bound so a broken writer or relay fails instead of hanging
ACT = Act(actor="service:outbox-test", reason="outbox contract", request_id="outbox-test")


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def _expected_events(pool: Pool) -> list[events_pb2.ScoreUpdated]:
    """The event of every ledger row, derived from the ledger alone: the running total and
    count, the time the total was reached (the last row that moved points), whether the user
    was banned after the row, and the action of a completion (admin entries name none)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT a.id, a.user_id::text, u.display_name, a.kind, a.action_id, a.points,"
            " a.created_at, a.period FROM user_actions a JOIN users u ON u.id = a.user_id"
            " WHERE a.board_id = %s ORDER BY a.id",
            (DEFAULT_BOARD,),
        )
        rows = cast(
            "list[tuple[int, str, str, str, str | None, int, datetime, int]]",
            await cur.fetchall(),
        )
    totals: dict[str, int] = {}
    versions: dict[str, int] = {}
    reached: dict[str, datetime] = {}
    banned: dict[str, bool] = {}
    events = []
    for entry_id, user, name, kind, action, points, created, period in rows:
        totals[user] = totals.get(user, 0) + points
        versions[user] = versions.get(user, 0) + 1
        if points != 0:
            reached[user] = created
        if kind in ("ban", "unban"):
            banned[user] = kind == "ban"
        events.append(
            events_pb2.ScoreUpdated(
                event_id=f"{DEFAULT_BOARD}:{entry_id}",
                board_id=DEFAULT_BOARD,
                user_id=user,
                display_name=name,
                total=totals[user],
                increment=points,
                version=versions[user],
                action_id=action if kind == "action" and action else "",
                ledger_entry_id=entry_id,
                commit_time=_timestamp(created),
                reached_time=_timestamp(reached[user]),
                excluded=banned.get(user, False),
                period=period,
            )
        )
    return events


async def _claimed(pool: Pool) -> list[outbox.OutboxRow]:
    """The outbox rows as the relay takes and decodes them (rolled back: nothing moves)."""
    async with pool.connection() as conn, conn.transaction(force_rollback=True):
        return await outbox.take(conn, 1000)


async def _write_everything(stack: Stack) -> tuple[list[str], list[int]]:
    """Completions (one group commit of several users, then more), then every admin act.
    Returns the users and the ledger entry ids the completions answered with."""
    action = await create_action(stack, base_points=7, daily_limit=100)
    users = await insert_users(stack.pool, 3)
    answered = []
    async with score_client(stack, await game_token(stack)) as game:
        for _ in range(2):
            replies = await asyncio.gather(
                *(game.complete(action.action_id, user_id=u) for u in users)
            )
            answered += [r.ledger_entry_id for r in replies]
    admin = AdminStore(stack.pool)
    await admin.adjust(DEFAULT_BOARD, users[1], 5, ACT)
    await admin.void(answered[0], ACT)
    await admin.set_banned(DEFAULT_BOARD, users[2], True, ACT)
    await admin.adjust(DEFAULT_BOARD, users[2], -3, ACT)  # while banned: excluded
    await admin.set_banned(DEFAULT_BOARD, users[2], False, ACT)
    return users, answered


async def test_what_ledger_and_admin_write_decodes_to_the_exact_events(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(score=NO_RELAY) as stack:
        users, answered = await _write_everything(stack)

        # In ledger order (ids of concurrent transactions need not commit in order).
        rows = sorted(await _claimed(stack.pool), key=lambda row: row.event().ledger_entry_id)
        expected = await _expected_events(stack.pool)
        # 6 completions; adjust, void, ban, adjust, unban.
        assert len(expected) == 11
        assert [row.event() for row in rows] == expected
        assert [row.board_id for row in rows] == [DEFAULT_BOARD] * len(rows)
        assert [row.payload for row in rows] == [outbox.encode(e) for e in expected]
        assert sorted(answered) == [e.ledger_entry_id for e in expected if e.action_id], (
            "the completions' own entries"
        )
        assert {e.user_id for e in expected} == set(users)

        # The relay publishes each row's payload as it is, and deletes the rows.
        relay = OutboxRelay(
            stack.pool,
            stack.redis,
            stack.keys,
            RelaySettings(listen=False),
            database_url=stack.config.database_url,
        )
        assert await relay.drain_once() == len(expected)
        published = await stream_events(stack.redis, stack.keys)
        assert sorted(published, key=lambda e: e.ledger_entry_id) == expected
        assert await outbox_count(stack.pool) == 0


@contextlib.asynccontextmanager
async def _listening(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {outbox.CHANNEL}")
        yield conn


async def _notified(conn: psycopg.AsyncConnection[TupleRow]) -> list[tuple[str, str]]:
    """(channel, payload) of the notifications that arrive within a short while."""
    return [(note.channel, note.payload) async for note in conn.notifies(timeout=1.0)]


async def test_writers_notify_the_channel_the_relay_listens_on(
    stack_factory: StackFactory,
) -> None:
    async with (
        stack_factory(score=NO_RELAY) as stack,
        _listening(stack.config.database_url) as listener,
    ):
        action = await create_action(stack, base_points=2, daily_limit=100)
        [user] = await insert_users(stack.pool, 1)
        async with score_client(stack, await game_token(stack)) as game:
            await game.complete(action.action_id, user_id=user)
            assert await _notified(listener) == [(outbox.CHANNEL, DEFAULT_BOARD)]
            await AdminStore(stack.pool).adjust(DEFAULT_BOARD, user, 1, ACT)
            assert await _notified(listener) == [(outbox.CHANNEL, DEFAULT_BOARD)]
            await _drain(stack)

            # A relay that sweeps once an hour moves new rows at once only if it is notified.
            relay = OutboxRelay(
                stack.pool,
                stack.redis,
                stack.keys,
                RelaySettings(sweep_seconds=3600),
                database_url=stack.config.database_url,
            )
            task = asyncio.create_task(relay.run())
            try:
                await asyncio.wait_for(relay.listening.wait(), BOUND)
                await asyncio.sleep(0.5)  # its catch-up pass (on connecting) is over
                await game.complete(action.action_id, user_id=user)
                await wait_for(lambda: _outbox_empty(stack.pool), timeout=BOUND)
                await AdminStore(stack.pool).adjust(DEFAULT_BOARD, user, 1, ACT)
                await wait_for(lambda: _outbox_empty(stack.pool), timeout=BOUND)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert len(await stream_events(stack.redis, stack.keys)) == 4


async def _drain(stack: Stack) -> None:
    relay = OutboxRelay(
        stack.pool,
        stack.redis,
        stack.keys,
        RelaySettings(listen=False),
        database_url=stack.config.database_url,
    )
    while await relay.drain_once():
        pass


async def _outbox_empty(pool: Pool) -> bool:
    return await outbox_count(pool) == 0
