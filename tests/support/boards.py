"""Boards for tests: created and closed through LeaderboardService's admin RPCs, and scores
written into one period of a board as a committed completion leaves them (the user, its total
and ledger row in PostgreSQL, its ScoreUpdated event on the board's stream), while the score
write path still writes the default board only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from scoreboard.events.v1 import events_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from tests.support.clients import metadata
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import admin_token


@dataclass(frozen=True)
class Scored:
    """A user with a total on a board's period."""

    total: int
    name: str = ""
    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def display_name(self) -> str:
        return self.name or f"P{self.user_id[:6]}"


async def _call(stack: Stack, method: str, request: Any) -> Any:
    async with grpc.aio.insecure_channel(stack.address("leaderboard")) as channel:
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        return await getattr(stub, method)(
            request, metadata=metadata(await admin_token(stack)), timeout=30
        )


async def create_board(
    stack: Stack, board_id: str, name: str, *, schedule: str = "", zone: str = ""
) -> pb.BoardInfo:
    """Create a board (admin) and wait until leaderboard_service has set it up in Redis (its
    event stream and the empty ranking of its period), as a running stack does."""
    reply = await _call(
        stack,
        "CreateBoard",
        pb.CreateBoardRequest(
            board=pb.BoardInfo(
                board_id=board_id, name=name, reset_schedule=schedule, time_zone=zone
            )
        ),
    )
    info: pb.BoardInfo = reply.board
    keys = stack.keys.board(board_id, info.current_period or 1)

    async def set_up() -> bool:
        return bool(await stack.redis.exists(keys.events)) and bool(
            await stack.redis.exists(keys.meta)
        )

    await wait_for(set_up, timeout=30)
    return info


async def set_default_board_tiers(
    stack: Stack, tiers: list[pb.TierDefinition], *, sort_order: str = ""
) -> None:
    """Replace the default board's tiers (and, given one, its sort order: only while it has no
    scores) as an admin, and wait until the default board's rank hub in stream_service holds the
    new tiers (it reads them, with the sort order, from their Redis copy)."""
    board = (await _call(stack, "GetBoard", pb.GetBoardRequest())).board
    if sort_order:
        board.sort_order = sort_order
    del board.tiers[:]
    board.tiers.extend(tiers)
    await _call(stack, "UpdateBoard", pb.UpdateBoardRequest(board=board))
    hub = stack.services["stream"].running.parts["rank_hubs"]["default"]

    async def read() -> bool:
        return [t.id for t in hub.tiers] == [t.tier_id for t in tiers]

    await wait_for(read, timeout=10)


async def close_period(stack: Stack, board_id: str) -> pb.ClosePeriodResponse:
    """Close the board's open period now (admin), as `scoreboard boards close-period` does."""
    reply: pb.ClosePeriodResponse = await _call(
        stack, "ClosePeriod", pb.ClosePeriodRequest(board_id=board_id)
    )
    return reply


async def score(stack: Stack, board: str, period: int, rows: list[Scored]) -> None:
    """The rows' users and totals on the board's period, in PostgreSQL and on its stream."""
    now = datetime.now(UTC)
    async with stack.pool.connection() as conn:
        for row in rows:
            await conn.execute(
                "INSERT INTO users (id, username, display_name, password_hash) VALUES"
                " (%s, %s, %s, 'x') ON CONFLICT (id) DO NOTHING",
                (row.user_id, "u" + uuid.UUID(row.user_id).hex[:31], row.display_name),
            )
            await conn.execute(
                "INSERT INTO user_scores (board_id, period, user_id, total, version, reached_at,"
                " updated_at) VALUES (%s, %s, %s, %s, 1, %s, %s)",
                (board, period, row.user_id, row.total, now, now),
            )
            await conn.execute(
                "INSERT INTO user_actions (board_id, period, user_id, kind, points, day, actor,"
                " path, reason) VALUES (%s, %s, %s, 'adjust', %s, %s, 'test', 'test', 'seed')",
                (board, period, row.user_id, row.total, now.date()),
            )
        await conn.commit()
    stamp = Timestamp()
    stamp.FromDatetime(now)
    keys = stack.keys.board(board)
    async with stack.redis.pipeline(transaction=True) as pipe:
        for row in rows:
            event = events_pb2.ScoreUpdated(
                event_id=f"{board}:{period}:{row.user_id}:1",
                board_id=board,
                period=period,
                user_id=row.user_id,
                display_name=row.display_name,
                total=row.total,
                version=1,
                commit_time=stamp,
                reached_time=stamp,
            )
            pipe.xadd(keys.events, {"e": event.SerializeToString()})
        await pipe.execute()
