"""Helpers for the admin tests: typed AdminService calls with a chosen identity, and the
PostgreSQL invariants every score change must keep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import grpc

from common.db import Pool
from tests.support.clients import metadata, service_token
from tests.support.stack import Stack

if TYPE_CHECKING:
    from scoreboard.admin.v1.admin_service_pb2_grpc import AdminServiceAsyncStub


@asynccontextmanager
async def admin_stub(stack: Stack) -> AsyncIterator[AdminServiceAsyncStub]:
    from scoreboard.admin.v1 import admin_service_pb2_grpc

    channel = grpc.aio.insecure_channel(stack.address("score"))
    try:
        yield admin_service_pb2_grpc.AdminServiceStub(channel)
    finally:
        await channel.close()


async def admin_metadata(stack: Stack) -> tuple[tuple[str, str], ...]:
    """The admin service account's (every scope, admin included)."""
    return metadata(await service_token(stack.address("auth"), "admin-tool", stack.admin_secret))


async def game_server_metadata(stack: Stack) -> tuple[tuple[str, str], ...]:
    """A service token without the admin scope."""
    return metadata(await service_token(stack.address("auth"), "game-server", stack.game_secret))


async def score_row(pool: Pool, user_id: str) -> tuple[int, int, int, int]:
    """total, version, SUM(points) and count of the ledger, for the default board."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.total, s.version,"
            " (SELECT coalesce(sum(points), 0) FROM user_actions a"
            "   WHERE a.user_id = s.user_id AND a.board_id = s.board_id),"
            " (SELECT count(*) FROM user_actions a"
            "   WHERE a.user_id = s.user_id AND a.board_id = s.board_id)"
            " FROM user_scores s WHERE s.board_id = 'default' AND s.user_id = %s",
            (user_id,),
        )
        row = await cur.fetchone()
    assert row is not None, "the user has no score row"
    total, version, points, count = (int(v) for v in row)  # type: ignore[call-overload]
    return total, version, points, count


async def assert_ledger_invariant(pool: Pool) -> None:
    """For every user: total == SUM(points) and version == number of ledger rows."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.user_id, s.total, s.version, coalesce(sum(a.points), 0), count(a.id)"
            " FROM user_scores s LEFT JOIN user_actions a"
            " ON a.user_id = s.user_id AND a.board_id = s.board_id"
            " GROUP BY s.user_id, s.total, s.version"
        )
        rows = await cur.fetchall()
    broken = [r for r in rows if r[1] != r[3] or r[2] != r[4]]
    assert not broken, f"ledger invariant broken: {broken}"


async def audit_count(pool: Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM audit_log")
        row = await cur.fetchone()
    assert row is not None
    count = row[0]
    assert isinstance(count, int)
    return count
