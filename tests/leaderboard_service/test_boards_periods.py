"""Boards and periods through the real leaderboard_service (issue 17): a weekly board with a cron
in a non-UTC zone beside the all-time board; crossing the reset with a controllable clock (and
closing by hand) freezes exactly the standings the live board showed, empties the live weekly
board, and the archive answers over gRPC; a close is done once, and a crash between the freeze
and its event repeats nothing and loses nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from common.redis_keys import BoardKeys
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.periods import close_period
from leaderboard_service.scheduler import PeriodScheduler
from scoreboard.events.v1 import events_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
from tests.conftest import StackFactory
from tests.leaderboard_service.support import Board, Seeded, event, publish, seed, wait_drained
from tests.support.servers import wait_for
from tests.support.stack import Stack

# Sunday 2 June 2024, noon UTC. The weekly board resets on Mondays at 00:00 in Berlin (CEST),
# that is at 22:00 UTC on Sunday.
START = datetime(2024, 6, 2, 12, tzinfo=UTC)
RESET = datetime(2024, 6, 2, 22, tzinfo=UTC)
WEEKLY = "weekly"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _settings(clock: Clock) -> dict[str, Any]:
    return {
        "consumer": ConsumerSettings(name="periods", block_ms=100, check_seconds=0),
        "clock": clock,
        # The test drives the scheduler itself (tick, close_now).
        "period_check_seconds": 3600.0,
        "period_key_grace_seconds": 60.0,
    }


def _scheduler(stack: Stack) -> PeriodScheduler:
    scheduler = stack.services["leaderboard"].running.parts["scheduler"]
    assert isinstance(scheduler, PeriodScheduler)
    return scheduler


def _shown(response: Any) -> list[tuple[int, str, int]]:
    return [(e.rank, e.user_id, e.score) for e in response.entries]


async def _seed_period(stack: Stack, rows: list[Seeded], period: int) -> None:
    """Scores of the weekly board's period, in PostgreSQL (ledger rows and totals) and on its
    stream, as a committed completion leaves them."""
    async with stack.pool.connection() as conn:
        for row in rows:
            await conn.execute(
                "INSERT INTO user_scores (board_id, period, user_id, total, version, reached_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (board_id, period, user_id) DO UPDATE SET total = EXCLUDED.total,"
                " version = EXCLUDED.version, reached_at = EXCLUDED.reached_at",
                (WEEKLY, period, row.user_id, row.total, row.version, row.reached, row.reached),
            )
            await conn.execute(
                "INSERT INTO user_actions (board_id, period, user_id, kind, points, day, actor,"
                " path, reason) VALUES (%s, %s, %s, 'adjust', %s, %s, 'test', 'test', 'seed')",
                (WEEKLY, period, row.user_id, row.total, row.reached.date()),
            )
        await conn.commit()
    keys = stack.keys.board(WEEKLY)
    await publish(stack.redis, keys, [event(r, board=WEEKLY, period=period) for r in rows])
    await wait_drained(stack.redis, keys)


async def _create_weekly(admin: Board) -> pb.BoardInfo:
    reply = await admin.stub.CreateBoard(
        pb.CreateBoardRequest(
            board=pb.BoardInfo(
                board_id=WEEKLY,
                name="This week",
                reset_schedule="0 0 * * 1",
                time_zone="Europe/Berlin",
            )
        ),
        metadata=admin._meta(),
    )
    return reply.board


async def _live_total(admin: Board, board: str) -> int:
    reply = await admin.stub.ListEntries(
        pb.ListEntriesRequest(board_id=board), metadata=admin._meta()
    )
    return int(reply.total_users)


async def _invariants(stack: Stack, period: int) -> None:
    """Ledger == totals for every user of the period; the archive holds every ranked user."""
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM user_scores s WHERE s.board_id = %s AND s.period = %s"
            " AND s.total <> (SELECT coalesce(sum(points), 0) FROM user_actions a"
            " WHERE a.board_id = s.board_id AND a.period = s.period AND a.user_id = s.user_id)",
            (WEEKLY, period),
        )
        assert await cur.fetchone() == (0,)
        await conn.rollback()


async def test_weekly_board_resets_by_schedule_and_by_hand(stack_factory: StackFactory) -> None:
    clock = Clock(START)
    async with (
        stack_factory(leaderboard=_settings(clock), with_edge=False) as stack,
        await Board.as_admin(stack) as admin,
    ):
        info = await _create_weekly(admin)
        assert info.current_period == 1
        assert info.next_reset_time.ToDatetime(tzinfo=UTC) == RESET
        assert info.time_zone == "Europe/Berlin"
        scheduler = _scheduler(stack)
        assert await scheduler.tick() == []

        # The same players on both boards; one banned player is on neither ranking.
        base = START - timedelta(hours=1)
        players = [Seeded(100 - 10 * i, base + timedelta(seconds=i)) for i in range(5)]
        tie = Seeded(80, base + timedelta(seconds=10))  # ties the third: ranked after it
        banned = Seeded(500, base, banned=True)
        await seed(stack.pool, [*players, tie, banned])
        await _seed_period(stack, [*players, tie, banned], 1)
        live = await admin.stub.ListEntries(
            pb.ListEntriesRequest(board_id=WEEKLY, page_size=100), metadata=admin._meta()
        )
        shown = _shown(live)
        assert [r[1] for r in shown] == [p.user_id for p in players[:3]] + [
            tie.user_id,
            *[p.user_id for p in players[3:]],
        ]
        assert [r[0] for r in shown] == [1, 2, 3, 3, 5, 6]
        all_time = _shown(await admin.entries())

        # Just before the reset nothing closes; at the reset period 1 is frozen.
        clock.now = RESET - timedelta(seconds=1)
        assert await scheduler.tick() == []
        clock.now = RESET + timedelta(seconds=1)
        closed = await scheduler.tick()
        assert [(c.board_id, c.period, c.entries) for c in closed] == [(WEEKLY, 1, 6)]
        assert await scheduler.tick() == []  # once
        assert await close_period(stack.pool, WEEKLY, 1, clock.now) is None

        # The archive is exactly what the live board showed, over both gRPC reads.
        archived = await admin.stub.ListEntries(
            pb.ListEntriesRequest(board_id=WEEKLY, period=1, page_size=100),
            metadata=admin._meta(),
        )
        assert _shown(archived) == shown
        assert archived.total_users == 6
        pages: list[tuple[int, str, int]] = []
        token = ""
        while True:
            page = await admin.stub.ListPeriodEntries(
                pb.ListPeriodEntriesRequest(
                    board_id=WEEKLY, period=1, page_size=4, page_token=token
                ),
                metadata=admin._meta(),
            )
            pages += _shown(page)
            token = page.next_page_token
            if not token:
                break
        assert pages == shown
        mine = await admin.stub.ListPeriodEntries(
            pb.ListPeriodEntriesRequest(board_id=WEEKLY, period=1, user_id=tie.user_id),
            metadata=admin._meta(),
        )
        assert (mine.user_entry.rank, mine.user_entry.score) == (3, 80)
        rank = await admin.stub.GetUserRank(
            pb.GetUserRankRequest(board_id=WEEKLY, period=1, user_id=tie.user_id),
            metadata=admin._meta(),
        )
        assert rank.entry.rank == 3 and rank.total_users == 6

        # The live weekly board is the new, empty period; the all-time board is untouched.
        await wait_for(lambda: _empty(admin), timeout=20)
        assert _shown(await admin.entries()) == all_time
        info = (
            await admin.stub.GetBoard(pb.GetBoardRequest(board_id=WEEKLY), metadata=admin._meta())
        ).board
        assert (info.current_period, info.last_closed_period) == (2, 1)
        assert info.period_start_time.ToDatetime(tzinfo=UTC) == RESET
        # Next Monday 00:00 CEST.
        assert info.next_reset_time.ToDatetime(tzinfo=UTC) == RESET + timedelta(days=7)
        assert [w.user_id for w in info.last_winners] == [p.user_id for p in players[:3]]

        # The event went through the outbox to the board's period stream, once.
        event_1 = await _period_event(stack, 1)
        assert (event_1.board_id, event_1.period, event_1.next_period) == (WEEKLY, 1, 2)
        assert [w.user_id for w in event_1.winners][:2] == [p.user_id for p in players[:2]]
        await _invariants(stack, 1)

        # Period 2: one score, then closed by hand.
        clock.now = RESET + timedelta(hours=5)
        late = Seeded(7, RESET + timedelta(hours=1), user_id=players[4].user_id)
        await _seed_period(stack, [late], 2)
        assert _shown(
            await admin.stub.ListEntries(
                pb.ListEntriesRequest(board_id=WEEKLY), metadata=admin._meta()
            )
        ) == [(1, late.user_id, 7)]
        reply = await admin.stub.ClosePeriod(
            pb.ClosePeriodRequest(board_id=WEEKLY), metadata=admin._meta()
        )
        assert (reply.period, reply.entries) == (2, 1)
        periods = await admin.stub.ListPeriods(
            pb.ListPeriodsRequest(board_id=WEEKLY), metadata=admin._meta()
        )
        assert [(p.period, p.closed) for p in periods.periods][:3] == [
            (4, False),
            (3, False),
            (2, True),
        ] or [(p.period, p.closed) for p in periods.periods][:2] == [(3, False), (2, True)]
        by_period = {p.period: p for p in periods.periods}
        assert by_period[3].start_time.ToDatetime(tzinfo=UTC) == clock.now
        assert by_period[3].end_time.ToDatetime(tzinfo=UTC) == RESET + timedelta(days=7)
        await wait_for(lambda: _empty(admin), timeout=20)
        await _invariants(stack, 2)
        assert (await _period_event(stack, 2)).entries == 1

        # An open period is read live, not from the archive.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.stub.ListPeriodEntries(
                pb.ListPeriodEntriesRequest(board_id=WEEKLY, period=3),
                metadata=admin._meta(),
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        boards = await admin.stub.ListBoards(pb.ListBoardsRequest(), metadata=admin._meta())
        assert {b.board_id for b in boards.boards} >= {"default", WEEKLY}


async def _empty(admin: Board) -> bool:
    return await _live_total(admin, WEEKLY) == 0


async def _period_event(stack: Stack, period: int) -> events_pb2.PeriodClosed:
    keys: BoardKeys = stack.keys.board(WEEKLY)

    async def found() -> events_pb2.PeriodClosed | None:
        entries: Any = await stack.redis.xrange(keys.period_events)
        events = [events_pb2.PeriodClosed.FromString(fields[b"c"]) for _, fields in entries]
        mine = [e for e in events if e.period == period]
        assert len(mine) <= 1, mine
        return mine[0] if mine else None

    await wait_for(lambda: _is_some(found()), timeout=20)
    result = await found()
    assert result is not None
    return result


async def _is_some(value: Any) -> bool:
    return (await value) is not None


_CRASH = """
import asyncio, os, sys
from datetime import datetime
from common.config import DatabaseSettings
from common.db import open_pool
from leaderboard_service.periods import close_period

async def main() -> None:
    pool = await open_pool(DatabaseSettings(sys.argv[1]), name="crash")

    async def die(board: str, period: int) -> None:
        os._exit(9)  # killed between the freeze and the event

    await close_period(pool, sys.argv[2], 1, datetime.fromisoformat(sys.argv[3]), fault=die)

asyncio.run(main())
"""


async def test_a_crash_between_freeze_and_event_repeats_nothing(
    stack_factory: StackFactory,
) -> None:
    clock = Clock(START)
    # No scheduler: the close is run by hand, in a process killed in the middle.
    settings = _settings(clock) | {"periods_enabled": False, "boards": ("default", WEEKLY)}
    async with stack_factory(leaderboard=settings, with_edge=False) as stack:
        async with await Board.as_admin(stack) as admin:
            await _create_weekly(admin)
        players = [Seeded(50 - i, START - timedelta(minutes=i)) for i in range(4)]
        await seed(stack.pool, players)
        await _seed_period(stack, players, 1)
        after = (RESET + timedelta(seconds=1)).isoformat()
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _CRASH, stack.config.database_url, WEEKLY, after],
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 9, proc.stderr.decode()
        async with stack.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM period_standings WHERE board_id = %s),"
                " (SELECT count(*) FROM outbox WHERE kind = 'period_closed'),"
                " (SELECT closed_at IS NULL FROM board_periods WHERE board_id = %s"
                "  AND period = 1)",
                (WEEKLY, WEEKLY),
            )
            assert await cur.fetchone() == (0, 0, True)  # nothing of the killed close remains
            await conn.rollback()
        # Run again: frozen once, with its one event.
        done = await close_period(stack.pool, WEEKLY, 1, RESET + timedelta(seconds=2))
        assert done is not None and done.entries == 4
        assert await close_period(stack.pool, WEEKLY, 1, RESET + timedelta(seconds=3)) is None
        async with stack.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*), count(DISTINCT user_id), min(rank), max(position)"
                " FROM period_standings WHERE board_id = %s AND period = 1",
                (WEEKLY,),
            )
            assert await cur.fetchone() == (4, 4, 1, 4)
            await conn.rollback()
        event_1 = await _period_event(stack, 1)
        assert event_1.entries == 4
        assert [w.user_id for w in event_1.winners] == [p.user_id for p in players]
