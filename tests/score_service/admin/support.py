"""Helpers of the AdminService tests: completions through the edge, the ranking read back from
Redis, refusals as (code, reason), and a repeatable action; with the admin client, tokens and
ledger checks they use, re-exported from tests.support."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from common.errors import from_rpc_error
from common.redis_values import parse_member, parse_user_state
from tests.support.clients import Api, Player, admin_stub
from tests.support.ledger import assert_ledger_invariant, audit_count, score_row
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import admin_metadata, game_server_metadata

__all__ = [
    "admin_metadata",
    "admin_stub",
    "assert_ledger_invariant",
    "assert_reconciled",
    "audit_count",
    "completed",
    "game_server_metadata",
    "newer_than",
    "ranked_ids",
    "refusal",
    "score_row",
    "tap_action",
    "top_ids",
    "wait_applied",
]


async def completed(api: Api, player: Player, action_id: str) -> dict[str, Any]:
    reply = await api.complete(player, action_id)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


async def ranked_ids(stack: Stack) -> list[str]:
    """User ids of the Redis ranking, best first."""
    members: list[Any] = await stack.redis.zrange(stack.keys.board("default").ranking, 0, -1)
    return [parse_member(m).user_id for m in members]


async def applied_version_of(stack: Stack, user_id: str) -> int:
    state: Any = await stack.redis.hget(stack.keys.board("default").users, user_id)
    return parse_user_state(state).version if state else 0


async def wait_applied(stack: Stack, user_id: str) -> None:
    """Wait until the ranking has applied every ledger change of the user."""
    _, version, _, _ = await score_row(stack.pool, user_id)

    async def applied() -> bool:
        applied_version: int = await applied_version_of(stack, user_id)
        return applied_version == version

    await wait_for(applied)


def newer_than(message: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """A LEADERBOARD_UPDATE newer than `earlier` (sequences only grow)."""
    return bool(
        message["type"] == "LEADERBOARD_UPDATE"
        and message["data"]["sequence"] > earlier["data"]["sequence"]
    )


def top_ids(message: dict[str, Any]) -> list[str]:
    return [entry["userId"] for entry in message["data"]["top10"]]


async def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = from_rpc_error(caught.value)
    return error.code, error.reason


async def assert_reconciled(stack: Stack) -> None:
    """Redis and PostgreSQL agree on every user's version, total and exclusion."""
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2, leaderboard_service_pb2_grpc

    channel = grpc.aio.insecure_channel(stack.address("leaderboard"))
    try:
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        reply = await stub.ReconcileRanking(
            leaderboard_service_pb2.ReconcileRankingRequest(),
            metadata=await admin_metadata(stack),
        )
    finally:
        await channel.close()
    assert reply.mismatched == 0, reply
    assert reply.users_in_database == reply.users_in_ranking


async def tap_action(stack: Stack) -> str:
    """An action that may be completed many times at once (no cooldown)."""
    from google.protobuf.duration_pb2 import Duration

    from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

    channel = grpc.aio.insecure_channel(stack.address("score"))
    try:
        score = score_service_pb2_grpc.ScoreServiceStub(channel)
        await score.CreateAction(
            score_service_pb2.CreateActionRequest(
                action=score_service_pb2.Action(
                    action_id="tap",
                    name="Tap",
                    base_points=1,
                    difficulty_multiplier=1.0,
                    daily_limit=10_000,
                    cooldown=Duration(seconds=0),
                    active=True,
                )
            ),
            metadata=await admin_metadata(stack),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    finally:
        await channel.close()
    return "tap"
