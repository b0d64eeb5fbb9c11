"""More than one board: each has its own keys (and hash tag), stream, consumer, rebuild and
reconcile; a request names its board or gets the default one."""

from __future__ import annotations

import grpc

from leaderboard_service.config import ConsumerSettings
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lpb
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    Board,
    Seeded,
    at,
    event,
    pg_order,
    publish,
    redis_order,
    refused,
    seed,
    wait_drained,
)


async def test_two_boards_rank_independently(stack_factory: StackFactory) -> None:
    consumer = ConsumerSettings(name="boards", block_ms=100, check_seconds=0)
    async with stack_factory(
        leaderboard={"consumer": consumer, "boards": ("default", "weekly")}, with_edge=False
    ) as stack:
        async with stack.pool.connection() as conn:
            await conn.execute("INSERT INTO boards (id, name) VALUES ('weekly', 'This week')")
            await conn.commit()
        alltime = [Seeded(100 - i, at(i)) for i in range(5)]
        await seed(stack.pool, alltime)
        # The same users on the weekly board, in the opposite order.
        async with stack.pool.connection() as conn:
            for i, row in enumerate(alltime):
                await conn.execute(
                    "INSERT INTO user_scores (board_id, user_id, total, version, reached_at)"
                    " VALUES ('weekly', %s, %s, 1, %s)",
                    (row.user_id, 10 + i, at(100 + i)),
                )
            await conn.commit()
        async with await Board.as_admin(stack) as admin:
            assert (await admin.rebuild()).users == 5
            assert (await admin.rebuild("weekly")).users == 5
            default = await admin.entries()
            weekly = await admin.entries(board="weekly")
            assert [e.user_id for e in default.entries] == [r.user_id for r in alltime]
            assert [e.user_id for e in weekly.entries] == [r.user_id for r in reversed(alltime)]
            assert (await admin.rank(alltime[0].user_id, board="weekly")).entry.rank == 5

            # An event on the weekly stream moves the weekly board only.
            keys = stack.keys.board("weekly")
            jump = Seeded(1000, at(200), version=2, user_id=alltime[2].user_id)
            await publish(stack.redis, keys, [event(jump, board="weekly")])
            await wait_drained(stack.redis, keys)
            assert (await admin.rank(jump.user_id, board="weekly")).entry.rank == 1
            assert (await admin.rank(jump.user_id)).entry.score == alltime[2].total
            assert await redis_order(stack.redis, stack.keys.board("default")) == await pg_order(
                stack.pool
            )
            # PostgreSQL never saw that event: reconcile finds it on weekly only.
            assert (await admin.reconcile(board="weekly")).mismatched == 1
            assert (await admin.reconcile()).mismatched == 0

            error = await refused(admin.entries(board="monthly"))
            assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


async def test_board_changes_are_audited_and_refused_when_they_cannot_apply(
    stack_factory: StackFactory,
) -> None:
    """CreateBoard and UpdateBoard write one audit row each in their own transaction (the new
    board; before and after); a taken id, an unknown board and a new sort order on a board with
    scores are refused and audit nothing."""
    consumer = ConsumerSettings(name="audit", block_ms=100, check_seconds=0)
    async with (
        stack_factory(leaderboard={"consumer": consumer}, with_edge=False) as stack,
        await Board.as_admin(stack) as admin,
    ):
        meta = admin._meta()
        weekly = lpb.BoardInfo(board_id="weekly", name="This week")
        created = await admin.stub.CreateBoard(lpb.CreateBoardRequest(board=weekly), metadata=meta)
        assert (created.board.board_id, created.board.name) == ("weekly", "This week")
        error = await refused(
            admin.stub.CreateBoard(lpb.CreateBoardRequest(board=weekly), metadata=meta)
        )
        assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "BOARD_EXISTS")

        renamed = lpb.BoardInfo(board_id="weekly", name="Week")
        updated = await admin.stub.UpdateBoard(lpb.UpdateBoardRequest(board=renamed), metadata=meta)
        assert updated.board.name == "Week"
        missing = lpb.BoardInfo(board_id="monthly", name="Month")
        error = await refused(
            admin.stub.UpdateBoard(lpb.UpdateBoardRequest(board=missing), metadata=meta)
        )
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
        await seed(stack.pool, [Seeded(5, at(0))], board="weekly")
        lower = lpb.BoardInfo(board_id="weekly", name="Week", sort_order="asc")
        error = await refused(
            admin.stub.UpdateBoard(lpb.UpdateBoardRequest(board=lower), metadata=meta)
        )
        assert (error.code, error.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "BOARD_HAS_SCORES",
        )

        async with stack.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT actor, action, target, detail FROM audit_log"
                " WHERE action LIKE 'board.%%' ORDER BY id"
            )
            rows = await cur.fetchall()
        assert [(action, target) for _, action, target, _ in rows] == [
            ("board.create", "board:weekly"),
            ("board.update", "board:weekly"),
        ]
        assert rows[0][0] and rows[0][0] == rows[1][0]  # the admin's audit name
        create_detail, update_detail = rows[0][3], rows[1][3]
        assert isinstance(create_detail, dict) and isinstance(update_detail, dict)
        assert create_detail["board"]["name"] == "This week"
        assert (update_detail["before"]["name"], update_detail["after"]["name"]) == (
            "This week",
            "Week",
        )
