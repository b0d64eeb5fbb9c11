"""CompleteAction through the edge and over gRPC: the response shape, server-computed points,
each rule's own refusal reason, and who may act for whom."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from common.errors import Reason
from scoreboard.score.v1 import score_service_pb2 as pb
from tests.score_service.helpers import (
    assert_ledger_invariants,
    call,
    create_action,
    ledger_rows,
    refused,
    score_client,
    score_of,
    set_active,
)
from tests.support.clients import Api, metadata
from tests.support.stack import Stack
from tests.support.tokens import admin_token, edge_token, game_token

ENVELOPE_KEYS = {"success", "error", "code"}


async def test_rest_response_has_the_specified_shape(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, base_points=7, multiplier=1.5)
    player = await api.register()

    reply = await api.complete(player, action.action_id)

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"success", "data"}
    assert body["success"] is True
    assert set(body["data"]) == {"newScore", "increment", "rank", "message"}
    # 7 x 1.5 = 10.5, rounded half up: computed by the server from the catalog.
    assert action.points == 11
    assert body["data"]["increment"] == 11
    assert body["data"]["newScore"] == 11
    assert body["data"]["rank"] >= 1
    assert body["data"]["message"] == "Action completed successfully"
    assert await score_of(score_stack.pool, player.user_id) == (11, 1)


async def test_unknown_action_is_refused_with_its_reason(score_stack: Stack, api: Api) -> None:
    player = await api.register()
    reply = await api.complete(player, "no-such-action")
    assert reply.status_code == 400
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False
    assert body["code"] == Reason.ACTION_NOT_FOUND
    assert "no-such-action" in body["error"]
    assert await ledger_rows(score_stack.pool, player.user_id) == []


async def test_inactive_action_is_refused_and_hidden(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack)
    player = await api.register()
    await set_active(score_stack, action, False)

    reply = await api.complete(player, action.action_id)
    assert reply.status_code == 400
    assert reply.json()["code"] == Reason.ACTION_INACTIVE
    assert await ledger_rows(score_stack.pool, player.user_id) == []
    listed = await api.http.get("/api/actions", headers=player.auth)
    assert action.action_id not in {a["actionId"] for a in listed.json()["data"]["actions"]}

    await set_active(score_stack, action, True)
    again = await api.complete(player, action.action_id)
    assert again.status_code == 200, again.text


async def test_daily_limit_above_one_counts_exactly_that_many(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, base_points=5, daily_limit=3)
    player = await api.register()

    for expected_total in (5, 10, 15):
        reply = await api.complete(player, action.action_id)
        assert reply.status_code == 200, reply.text
        assert reply.json()["data"]["newScore"] == expected_total
    fourth = await api.complete(player, action.action_id)

    assert fourth.status_code == 400
    assert fourth.json()["code"] == Reason.DAILY_LIMIT_REACHED
    assert "3 times" in fourth.json()["error"]
    assert await score_of(score_stack.pool, player.user_id) == (15, 3)
    listed = await api.http.get("/api/actions", headers=player.auth)
    mine = next(a for a in listed.json()["data"]["actions"] if a["actionId"] == action.action_id)
    assert mine["remainingToday"] == 0
    assert mine["dailyLimit"] == 3


async def test_cooldown_refuses_until_it_is_over(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, daily_limit=10, cooldown=3600)
    player = await api.register()

    first = await api.complete(player, action.action_id)
    assert first.status_code == 200, first.text
    second = await api.complete(player, action.action_id)

    assert second.status_code == 400
    assert second.json()["code"] == Reason.COOLDOWN_ACTIVE
    assert 3500 <= int(second.headers["retry-after"]) <= 3600
    assert await score_of(score_stack.pool, player.user_id) == (10, 1)
    listed = await api.http.get("/api/actions", headers=player.auth)
    mine = next(a for a in listed.json()["data"]["actions"] if a["actionId"] == action.action_id)
    assert mine["remainingToday"] == 9
    assert mine["availableAt"] is not None and mine["availableAt"].endswith("Z")


async def test_a_cooldown_ends(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, daily_limit=10, cooldown=1)
    player = await api.register()
    assert (await api.complete(player, action.action_id)).status_code == 200
    refused_now = await api.complete(player, action.action_id)
    if refused_now.status_code == 400:  # a slow machine may already be past the second
        assert refused_now.json()["code"] == Reason.COOLDOWN_ACTIVE
    await asyncio.sleep(1.1)
    later = await api.complete(player, action.action_id)
    assert later.status_code == 200, later.text
    await assert_ledger_invariants(score_stack.pool)


async def test_catalog_shows_what_is_left_today_for_a_signed_in_user(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack, daily_limit=2)
    player = await api.register()
    anonymous = await api.http.get("/api/actions")
    entry = next(
        a for a in anonymous.json()["data"]["actions"] if a["actionId"] == action.action_id
    )
    assert entry["remainingToday"] is None and entry["availableAt"] is None
    assert entry["points"] == action.points

    await api.complete(player, action.action_id)
    signed_in = await api.http.get("/api/actions", headers=player.auth)
    mine = next(a for a in signed_in.json()["data"]["actions"] if a["actionId"] == action.action_id)
    assert mine["remainingToday"] == 1
    assert mine["availableAt"] is None


@pytest.mark.parametrize("field", ["points", "score", "total", "increment", "newScore"])
async def test_client_points_are_refused_and_change_nothing(
    score_stack: Stack, api: Api, field: str
) -> None:
    action = await create_action(score_stack)
    player = await api.register()
    reply = await api.complete(player, action.action_id, **{field: 1_000_000})
    assert reply.status_code == 400
    assert reply.json()["code"] == Reason.CLIENT_POINTS_REFUSED
    assert await ledger_rows(score_stack.pool, player.user_id) == []
    assert await score_of(score_stack.pool, player.user_id) is None


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


async def test_grpc_ignores_points_smuggled_as_unknown_fields(score_stack: Stack, api: Api) -> None:
    """A client built against a forged proto with a points field: the server never reads it."""
    action = await create_action(score_stack, base_points=4)
    user_id = (await api.register()).user_id
    request = pb.CompleteActionRequest(
        action_id=action.action_id, user_id=user_id
    ).SerializeToString()
    # field 15 (varint) = 1,000,000 and field 16 (varint) = 999: unknown to the server.
    forged = request + bytes([15 << 3]) + _varint(1_000_000) + _varint(16 << 3) + _varint(999)
    channel = grpc.aio.insecure_channel(score_stack.address("score"))
    try:
        method = channel.unary_unary(
            "/scoreboard.score.v1.ScoreService/CompleteAction",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.CompleteActionResponse.FromString,
        )
        reply = await call(
            method(forged, metadata=metadata(await game_token(score_stack)), timeout=30)
        )
    finally:
        await channel.close()
    assert reply.increment == 4
    assert reply.new_score == 4
    assert await score_of(score_stack.pool, user_id) == (4, 1)


async def test_a_user_token_acts_only_for_itself(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack)
    alice = await api.register()
    bob = await api.register()
    async with score_client(score_stack, alice.access_token) as client:
        error = await refused(client.complete(action.action_id, user_id=bob.user_id))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert "scores:write" in error.message
        # Naming itself (in any spelling of the UUID) is fine.
        mine = await client.complete(action.action_id, user_id=alice.user_id.upper())
    assert mine.new_score == 10
    assert await ledger_rows(score_stack.pool, bob.user_id) == []
    assert [row[1] for row in await ledger_rows(score_stack.pool, alice.user_id)] == [
        action.action_id
    ]


async def test_a_service_without_scores_write_cannot_act_for_users(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack)
    player = await api.register()
    async with score_client(score_stack, await edge_token(score_stack)) as edge:
        error = await refused(edge.complete(action.action_id, user_id=player.user_id))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert await ledger_rows(score_stack.pool, player.user_id) == []


async def test_a_game_server_acts_for_the_user_it_names(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, base_points=3)
    player = await api.register()
    async with score_client(score_stack, await game_token(score_stack)) as game:
        without_user = await refused(game.complete(action.action_id))
        assert without_user.code == grpc.StatusCode.INVALID_ARGUMENT
        bad_user = await refused(game.complete(action.action_id, user_id="not-a-uuid"))
        assert bad_user.code == grpc.StatusCode.INVALID_ARGUMENT
        nobody = await refused(
            game.complete(action.action_id, user_id="00000000-0000-4000-8000-000000000000")
        )
        assert nobody.reason == Reason.USER_NOT_FOUND
        # An upper-case spelling is the same user: one ledger, one ranking member.
        reply = await game.complete(action.action_id, user_id=player.user_id.upper())
    assert reply.new_score == 3
    rows = await ledger_rows(score_stack.pool, player.user_id)
    assert [(r[2], r[3], r[4]) for r in rows] == [(3, "service:game-server", "grpc")]
    await assert_ledger_invariants(score_stack.pool)


async def test_bad_requests_get_clear_errors_and_change_nothing(
    score_stack: Stack, api: Api
) -> None:
    player = await api.register()
    headers = dict(player.auth)
    cases = [
        ({"actionId": "Bad Id!"}, 422, "VALIDATION_FAILED"),
        ({}, 422, "VALIDATION_FAILED"),
        ({"actionId": "daily-login", "extra": 1}, 422, "VALIDATION_FAILED"),
        ({"actionId": "daily-login", "ticket": "x" * 201}, 422, "VALIDATION_FAILED"),
    ]
    for body, status, code in cases:
        reply = await api.http.post("/api/actions/complete", json=body, headers=headers)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["code"] == code
    bad_key = await api.http.post(
        "/api/actions/complete",
        json={"actionId": "daily-login"},
        headers={**headers, "Idempotency-Key": "has space"},
    )
    assert bad_key.status_code == 400
    assert bad_key.json()["code"] == Reason.INVALID_ARGUMENT
    no_token = await api.http.post("/api/actions/complete", json={"actionId": "daily-login"})
    assert no_token.status_code == 401
    assert await ledger_rows(score_stack.pool, player.user_id) == []
    async with score_client(score_stack, player.access_token) as client:
        long_key = await refused(client.complete("daily-login", key="k" * 129))
        assert long_key.code == grpc.StatusCode.INVALID_ARGUMENT
        bad_action = await refused(client.complete("Daily Login"))
        assert bad_action.code == grpc.StatusCode.INVALID_ARGUMENT
    assert await ledger_rows(score_stack.pool, player.user_id) == []


async def test_list_actions_rpc(score_stack: Stack, api: Api) -> None:
    hidden = await create_action(score_stack, active=False)
    player = await api.register()
    async with score_client(score_stack, player.access_token) as client:
        listed = {a.action_id: a for a in await client.list()}
        assert hidden.action_id not in listed
        assert listed["daily-login"].remaining_today == 1
        not_admin = await refused(client.list(include_inactive=True))
        assert not_admin.code == grpc.StatusCode.PERMISSION_DENIED
    async with score_client(score_stack, await game_token(score_stack)) as game:
        for_player = {a.action_id: a for a in await game.list(user_id=player.user_id)}
        assert for_player["daily-login"].remaining_today == 1
    async with score_client(score_stack, await admin_token(score_stack)) as admin:
        everything = {a.action_id for a in await admin.list(include_inactive=True)}
    assert hidden.action_id in everything


async def test_a_banned_user_cannot_score(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack)
    player = await api.register()
    async with score_stack.pool.connection() as conn:
        await conn.execute("UPDATE users SET banned = true WHERE id = %s", (player.user_id,))
    reply = await api.complete(player, action.action_id)
    assert reply.status_code == 403
    assert reply.json()["code"] == Reason.USER_BANNED
    assert await ledger_rows(score_stack.pool, player.user_id) == []
