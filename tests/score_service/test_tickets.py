"""Action tickets: StartAction, then CompleteAction with the ticket, no sooner than the minimum
duration, for the same user and action, once. Each violation has its own reason."""

from __future__ import annotations

import asyncio

import grpc

from common.errors import Reason
from tests.score_service.helpers import (
    assert_ledger_invariants,
    create_action,
    ledger_rows,
    refused,
    score_client,
    score_of,
)
from tests.support.clients import Api
from tests.support.stack import Stack
from tests.support.tokens import game_token


async def _start(api: Api, token: str, action_id: str) -> str:
    reply = await api.http.post(
        "/api/actions/start",
        json={"actionId": action_id},
        headers={"authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert data["notBefore"].endswith("Z") and data["expiresAt"].endswith("Z")
    ticket: str = data["ticket"]
    return ticket


async def test_a_ticket_after_the_minimum_duration_counts(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, base_points=50, requires_ticket=True, min_duration=1)
    player = await api.register()
    ticket = await _start(api, player.access_token, action.action_id)
    await asyncio.sleep(1.1)
    reply = await api.complete(player, action.action_id, ticket=ticket)
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"]["increment"] == 50


async def test_a_missing_ticket_is_refused(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, requires_ticket=True)
    player = await api.register()
    reply = await api.complete(player, action.action_id)
    assert reply.status_code == 400
    assert reply.json()["code"] == Reason.TICKET_REQUIRED
    assert await ledger_rows(score_stack.pool, player.user_id) == []


async def test_a_reused_ticket_is_refused(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, requires_ticket=True, daily_limit=5)
    player = await api.register()
    ticket = await _start(api, player.access_token, action.action_id)
    assert (await api.complete(player, action.action_id, ticket=ticket)).status_code == 200

    reused = await api.complete(player, action.action_id, ticket=ticket)

    assert reused.status_code == 400
    assert reused.json()["code"] == Reason.TICKET_USED
    assert await score_of(score_stack.pool, player.user_id) == (10, 1)


async def test_a_ticket_presented_too_early_is_refused_and_stays_usable(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack, requires_ticket=True, min_duration=3600)
    player = await api.register()
    ticket = await _start(api, player.access_token, action.action_id)

    early = await api.complete(player, action.action_id, ticket=ticket)

    assert early.status_code == 400
    assert early.json()["code"] == Reason.TICKET_TOO_EARLY
    assert 3500 <= int(early.headers["retry-after"]) <= 3600
    assert await ledger_rows(score_stack.pool, player.user_id) == []
    async with score_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT used_at FROM action_tickets WHERE user_id = %s", (player.user_id,)
        )
        assert await cur.fetchall() == [(None,)]


async def test_another_users_ticket_is_refused(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, requires_ticket=True)
    owner, thief = await api.register(), await api.register()
    ticket = await _start(api, owner.access_token, action.action_id)

    stolen = await api.complete(thief, action.action_id, ticket=ticket)

    assert stolen.status_code == 403
    assert stolen.json()["code"] == Reason.TICKET_MISMATCH
    assert await ledger_rows(score_stack.pool, thief.user_id) == []
    # The owner can still use it.
    assert (await api.complete(owner, action.action_id, ticket=ticket)).status_code == 200


async def test_a_ticket_for_another_action_is_refused(score_stack: Stack, api: Api) -> None:
    boss = await create_action(score_stack, requires_ticket=True)
    other = await create_action(score_stack, requires_ticket=True)
    player = await api.register()
    ticket = await _start(api, player.access_token, boss.action_id)
    reply = await api.complete(player, other.action_id, ticket=ticket)
    assert reply.status_code == 403
    assert reply.json()["code"] == Reason.TICKET_MISMATCH


async def test_forged_and_expired_tickets_are_refused(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, requires_ticket=True, daily_limit=3)
    player = await api.register()
    ticket = await _start(api, player.access_token, action.action_id)
    ticket_id, _, mac = ticket.partition(".")
    for forged in (
        f"{ticket_id}.{'0' * len(mac)}",
        f"00000000-0000-4000-8000-000000000000.{mac}",
        "not-a-ticket",
    ):
        reply = await api.complete(player, action.action_id, ticket=forged)
        assert reply.status_code == 400, forged
        assert reply.json()["code"] == Reason.TICKET_INVALID
    async with score_stack.pool.connection() as conn:
        await conn.execute(
            "UPDATE action_tickets SET expires_at = clock_timestamp() WHERE id = %s",
            (ticket_id,),
        )
    expired = await api.complete(player, action.action_id, ticket=ticket)
    assert expired.status_code == 400
    assert expired.json()["code"] == Reason.TICKET_EXPIRED
    assert await ledger_rows(score_stack.pool, player.user_id) == []


async def test_start_is_refused_when_the_completion_could_not_count(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack, requires_ticket=True, daily_limit=1)
    player = await api.register()
    ticket = await _start(api, player.access_token, action.action_id)
    assert (await api.complete(player, action.action_id, ticket=ticket)).status_code == 200
    reply = await api.http.post(
        "/api/actions/start", json={"actionId": action.action_id}, headers=player.auth
    )
    assert reply.status_code == 400
    assert reply.json()["code"] == Reason.DAILY_LIMIT_REACHED


async def test_a_game_server_starts_and_completes_for_a_user(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, requires_ticket=True, base_points=30)
    player, stranger = await api.register(), await api.register()
    async with score_client(score_stack, await game_token(score_stack)) as game:
        started = await game.start(action.action_id, user_id=player.user_id)
        wrong = await refused(
            game.complete(action.action_id, user_id=stranger.user_id, ticket=started.ticket)
        )
        assert wrong.code == grpc.StatusCode.PERMISSION_DENIED
        assert wrong.reason == Reason.TICKET_MISMATCH
        done = await game.complete(action.action_id, user_id=player.user_id, ticket=started.ticket)
    assert done.new_score == 30
    async with score_client(score_stack, stranger.access_token) as client:
        not_for_others = await refused(client.start(action.action_id, user_id=player.user_id))
    assert not_for_others.code == grpc.StatusCode.PERMISSION_DENIED
    await assert_ledger_invariants(score_stack.pool)
