"""One completion on several boards, through the real path (issue 17): the all-time board and a
weekly board with a cron in a non-UTC zone count it in one transaction, each with its own ledger
row, total and event in its own period; `best` and `latest` boards take a value only a game
server may report, within the board's bounds; a lower-is-better board ranks lower first in
Redis, in the PostgreSQL fallback and in the archive; a reset under writes keeps ledger ==
totals per board and period, and Redis == PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, cast

import grpc

from common.errors import Reason
from leaderboard_service.pg_ranking import PgRanking
from scoreboard.events.v1 import events_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lb
from tests.leaderboard_service.support import Board
from tests.score_service.helpers import (
    ScoreClient,
    assert_counters_match_ledger,
    assert_ledger_invariants,
    create_action,
    insert_users,
    refused,
    score_client,
)
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import game_token, register


def _board_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def _create_board(stack: Stack, **fields: Any) -> lb.BoardInfo:
    async with await Board.as_admin(stack) as admin:
        reply = await admin.stub.CreateBoard(
            lb.CreateBoardRequest(board=lb.BoardInfo(**fields)), metadata=admin._meta()
        )
    return reply.board


async def _stream_events(stack: Stack, board: str) -> list[events_pb2.ScoreUpdated]:
    entries = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]",
        await stack.redis.xrange(stack.keys.board(board).events, "-", "+"),
    )
    return [events_pb2.ScoreUpdated.FromString(fields[b"e"]) for _, fields in entries]


async def _rows(stack: Stack, user: str) -> list[tuple[Any, ...]]:
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT board_id, period, points, value, completion_id::text FROM user_actions"
            " WHERE user_id = %s ORDER BY id",
            (user,),
        )
        return list(await cur.fetchall())


async def _entries(stack: Stack, board: str, period: int = 0) -> list[tuple[int, str, int]]:
    """The board's live entries as LeaderboardService answers them (Redis once ready)."""
    async with await Board.as_admin(stack) as admin:
        reply = await admin.stub.ListEntries(
            lb.ListEntriesRequest(board_id=board, period=period, page_size=100),
            metadata=admin._meta(),
        )
    return [(e.rank, e.user_id, e.score) for e in reply.entries]


async def test_one_completion_counts_on_the_weekly_and_the_all_time_board(
    score_stack: Stack,
) -> None:
    weekly = await _create_board(
        score_stack,
        board_id=_board_id("week"),
        name="This week",
        reset_schedule="0 0 * * 1",
        time_zone="Europe/Berlin",
    )
    assert weekly.current_period >= 1 and weekly.HasField("next_reset_time")
    action = await create_action(score_stack, base_points=7, board_ids=(weekly.board_id,))
    assert list(action.board_ids) == [weekly.board_id]
    [user] = await insert_users(score_stack.pool, 1)
    async with score_client(score_stack, await game_token(score_stack)) as game:
        reply = await game.complete(action.action_id, user_id=user)

    assert (reply.board_id, reply.period, reply.new_score, reply.increment) == ("default", 1, 7, 7)
    [other] = reply.other_boards
    assert (other.board_id, other.period) == (weekly.board_id, weekly.current_period)
    assert (other.new_score, other.increment, other.version) == (7, 7, 1)
    assert other.ledger_entry_id != reply.ledger_entry_id
    # Its own ledger row on each board, in each board's period, one completion identity.
    rows = await _rows(score_stack, user)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("default", 1, 7),
        (weekly.board_id, weekly.current_period, 7),
    ]
    assert rows[0][4] == rows[1][4] is not None
    # Its own event on each board's stream, naming the period.
    for board, period, entry in (
        ("default", 1, reply.ledger_entry_id),
        (weekly.board_id, weekly.current_period, other.ledger_entry_id),
    ):

        async def published(board: str = board, entry: int = entry) -> list[Any]:
            return [
                e for e in await _stream_events(score_stack, board) if e.ledger_entry_id == entry
            ]

        [event] = await wait_for(published, timeout=20)
        assert (event.board_id, event.period, event.user_id, event.total) == (
            board,
            period,
            user,
            7,
        )
    await assert_ledger_invariants(score_stack.pool)
    await assert_counters_match_ledger(score_stack.pool)


async def test_best_and_latest_boards_take_a_game_servers_value(score_stack: Stack) -> None:
    laps = await _create_board(
        score_stack,
        board_id=_board_id("laps"),
        name="Fastest lap",
        sort_order="asc",
        combine="best",
        min_value=1_000,
        max_value=600_000,
    )
    level = await _create_board(
        score_stack, board_id=_board_id("level"), name="Level", combine="latest"
    )
    action = await create_action(
        score_stack, base_points=3, daily_limit=100, board_ids=(laps.board_id, level.board_id)
    )
    [user] = await insert_users(score_stack.pool, 1)

    async with score_client(score_stack, await game_token(score_stack)) as game:

        async def lap(value: int | None) -> tuple[tuple[int, int], ...]:
            reply = await game.complete(action.action_id, user_id=user, value=value)
            assert reply.new_score == 3 * reply.version  # the default board sums the points
            return tuple((b.new_score, b.increment) for b in reply.other_boards)

        assert await lap(90_000) == ((90_000, 90_000), (90_000, 90_000))
        # A slower lap: the best stays (nothing gained), the latest follows.
        assert await lap(95_000) == ((90_000, 0), (95_000, 5_000))
        assert await lap(80_000) == ((80_000, -10_000), (80_000, -15_000))

        before = await _rows(score_stack, user)
        out = await refused(
            game.stub.CompleteAction(
                _request(action.action_id, user, 999), metadata=game.md(), timeout=30
            )
        )
        assert (out.code, out.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.VALUE_OUT_OF_BOUNDS,
        )
        missing = await refused(game.complete(action.action_id, user_id=user))
        assert missing.code == grpc.StatusCode.INVALID_ARGUMENT
        assert await _rows(score_stack, user) == before

    # A user never reports a value, not even for itself.
    player, token = await register(score_stack)
    async with score_client(score_stack, token) as own:
        denied = await refused(own.complete(action.action_id, value=1_500))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert await _rows(score_stack, player) == []

    rows = await _rows(score_stack, user)
    assert [r[3] for r in rows if r[0] == laps.board_id] == [90_000, 95_000, 80_000]
    assert {r[3] for r in rows if r[0] == "default"} == {None}
    await assert_ledger_invariants(score_stack.pool)


def _request(action_id: str, user: str, value: int) -> Any:
    from scoreboard.score.v1 import score_service_pb2 as pb

    return pb.CompleteActionRequest(action_id=action_id, user_id=user, value=value)


async def test_a_lower_is_better_board_ranks_lower_first_everywhere(score_stack: Stack) -> None:
    laps = await _create_board(
        score_stack,
        board_id=_board_id("speed"),
        name="Speed run",
        sort_order="asc",
        combine="best",
    )
    action = await create_action(score_stack, base_points=1, board_ids=(laps.board_id,))
    slow, fast, tied = await insert_users(score_stack.pool, 3)
    async with score_client(score_stack, await game_token(score_stack)) as game:
        await game.complete(action.action_id, user_id=slow, value=90_000)
        first = await game.complete(action.action_id, user_id=fast, value=80_000)
        second = await game.complete(action.action_id, user_id=tied, value=80_000)
    # The rank each completion saw: lower is better, equal values share it.
    assert first.other_boards[0].rank == 1
    assert second.other_boards[0].rank == 1
    expected = [(1, fast, 80_000), (1, tied, 80_000), (3, slow, 90_000)]

    async def ranked() -> bool:
        return await _entries(score_stack, laps.board_id) == expected

    await wait_for(ranked, timeout=20)
    # The PostgreSQL fallback agrees (earlier achiever first on a tie).
    fallback = PgRanking(score_stack.pool)
    page = await fallback.top(laps.board_id, 0, 10, period=laps.current_period, asc=True)
    assert [(e.rank, e.user_id, e.score) for e in page.entries] == expected
    mine = await fallback.user_rank(laps.board_id, slow, 1, period=laps.current_period, asc=True)
    assert mine is not None and mine.entry.rank == 3
    # And so does the archive once the period is closed by hand.
    async with await Board.as_admin(score_stack) as admin:
        closed = await admin.stub.ClosePeriod(
            lb.ClosePeriodRequest(board_id=laps.board_id), metadata=admin._meta()
        )
        archive = await admin.stub.ListPeriodEntries(
            lb.ListPeriodEntriesRequest(board_id=laps.board_id, period=closed.period),
            metadata=admin._meta(),
        )
    assert [(e.rank, e.user_id, e.score) for e in archive.entries] == expected


async def test_a_reset_under_writes_keeps_every_invariant(score_stack: Stack) -> None:
    weekly = await _create_board(
        score_stack,
        board_id=_board_id("wk"),
        name="Weekly",
        reset_schedule="0 0 * * 1",
        time_zone="America/New_York",
    )
    action = await create_action(
        score_stack, base_points=2, daily_limit=1000, board_ids=(weekly.board_id,)
    )
    users = await insert_users(score_stack.pool, 8)
    stop = asyncio.Event()

    async def writer(game: ScoreClient, user: str) -> int:
        done = 0
        while not stop.is_set():
            reply = await game.complete(action.action_id, user_id=user)
            assert reply.other_boards[0].board_id == weekly.board_id
            done += 1
        return done

    async with score_client(score_stack, await game_token(score_stack)) as game:
        writers = [asyncio.create_task(writer(game, u)) for u in users]
        await asyncio.sleep(0.5)
        async with await Board.as_admin(score_stack) as admin:
            closed = await admin.stub.ClosePeriod(
                lb.ClosePeriodRequest(board_id=weekly.board_id), metadata=admin._meta()
            )
        await asyncio.sleep(0.5)
        stop.set()
        written = sum(await asyncio.gather(*writers))
    assert written > 0
    async with score_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT period, count(*) FROM user_actions WHERE board_id = %s GROUP BY period"
            " ORDER BY period",
            (weekly.board_id,),
        )
        per_period = dict(cast("list[tuple[int, int]]", await cur.fetchall()))
        cur = await conn.execute(
            "SELECT count(*) FROM user_actions WHERE board_id = 'default'"
            " AND user_id = ANY(%s::uuid[])",
            (users,),
        )
        row = await cur.fetchone()
    # Every completion counted once on each board, on one side of the reset or the other.
    assert row is not None and sum(per_period.values()) == row[0] == written
    assert set(per_period) <= {closed.period, closed.period + 1}
    await assert_ledger_invariants(score_stack.pool)
    # The archive holds exactly the closed period's totals; the live board, the new period's.
    async with score_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT user_id::text, total FROM user_scores WHERE board_id = %s AND period = %s"
            " AND version > 0 ORDER BY total DESC, reached_at, user_id",
            (weekly.board_id, closed.period),
        )
        frozen = [(str(u), int(str(t))) for u, t in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT user_id::text, score FROM period_standings WHERE board_id = %s"
            " AND period = %s ORDER BY position",
            (weekly.board_id, closed.period),
        )
        archived = [(str(u), int(str(t))) for u, t in await cur.fetchall()]
    assert archived == frozen
    fallback = PgRanking(score_stack.pool)

    async def agree() -> bool:
        pg = await fallback.top(weekly.board_id, 0, 100, period=closed.period + 1)
        live = await _entries(score_stack, weekly.board_id)
        return bool(live) and live == [(e.rank, e.user_id, e.score) for e in pg.entries]

    await wait_for(agree, timeout=30)


async def test_a_ban_excludes_the_user_on_every_board_and_open_period(score_stack: Stack) -> None:
    from scoreboard.admin.v1 import admin_service_pb2 as admin_pb
    from tests.support.clients import admin_stub
    from tests.support.tokens import admin_metadata

    weekly = await _create_board(
        score_stack,
        board_id=_board_id("bw"),
        name="Weekly",
        reset_schedule="0 0 * * 1",
        time_zone="Europe/Berlin",
    )
    action = await create_action(score_stack, base_points=5, board_ids=(weekly.board_id,))
    cheat, fair = await insert_users(score_stack.pool, 2)
    async with score_client(score_stack, await game_token(score_stack)) as game:
        for user in (cheat, fair):
            await game.complete(action.action_id, user_id=user)

    async def listed(user: str) -> bool:
        return user in [u for _, u, _ in await _entries(score_stack, weekly.board_id)]

    await wait_for(lambda: listed(cheat), timeout=20)
    async with admin_stub(score_stack) as admin:
        reply = await admin.BanUser(
            admin_pb.BanUserRequest(user_id=cheat, reason="bot"),
            metadata=await admin_metadata(score_stack),
        )
    assert {(s.board_id, s.excluded) for s in reply.scores} == {
        ("default", True),
        (weekly.board_id, True),
    }

    async def gone() -> bool:
        return not await listed(cheat) and await listed(fair)

    await wait_for(gone, timeout=20)
    async with score_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT board_id, period, kind FROM user_actions WHERE user_id = %s AND kind = 'ban'",
            (cheat,),
        )
        bans = sorted(cast("list[tuple[str, int, str]]", await cur.fetchall()))
    assert bans == sorted([("default", 1, "ban"), (weekly.board_id, weekly.current_period, "ban")])
    await assert_ledger_invariants(score_stack.pool)
