"""Idempotency keys and concurrent identical completions: a completion counts once."""

from __future__ import annotations

import asyncio
import secrets

import grpc

from common.errors import Reason
from tests.score_service.helpers import (
    assert_ledger_invariants,
    create_action,
    ledger_rows,
    refused,
    score_client,
    score_of,
    set_active,
)
from tests.support.clients import Api
from tests.support.stack import Stack
from tests.support.tokens import game_token


async def test_a_retry_with_the_same_key_replays_the_identical_body(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack, base_points=6, daily_limit=5)
    player = await api.register()
    key = secrets.token_hex(8)

    first = await api.complete(player, action.action_id, idempotency_key=key)
    # Someone else scores in between: the replay must still be the first body, byte for byte.
    other = await api.register()
    await api.complete(other, action.action_id)
    retry = await api.complete(player, action.action_id, idempotency_key=key)

    assert first.status_code == retry.status_code == 200
    assert retry.content == first.content
    assert retry.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(await ledger_rows(score_stack.pool, player.user_id)) == 1
    assert await score_of(score_stack.pool, player.user_id) == (6, 1)


async def test_the_same_key_with_another_request_is_a_conflict(
    score_stack: Stack, api: Api
) -> None:
    first_action = await create_action(score_stack, daily_limit=5)
    second_action = await create_action(score_stack, daily_limit=5)
    player = await api.register()
    key = secrets.token_hex(8)
    assert (await api.complete(player, first_action.action_id, idempotency_key=key)).is_success

    conflict = await api.complete(player, second_action.action_id, idempotency_key=key)

    assert conflict.status_code == 409
    assert conflict.json() == {
        "success": False,
        "error": "this idempotency key was used with a different request",
        "code": Reason.IDEMPOTENCY_CONFLICT,
    }
    assert [r[1] for r in await ledger_rows(score_stack.pool, player.user_id)] == [
        first_action.action_id
    ]


async def test_keys_are_scoped_per_caller(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack)
    alice, bob = await api.register(), await api.register()
    key = "shared-key-" + secrets.token_hex(4)
    assert (await api.complete(alice, action.action_id, idempotency_key=key)).status_code == 200
    bobs = await api.complete(bob, action.action_id, idempotency_key=key)
    assert bobs.status_code == 200
    assert "idempotent-replayed" not in bobs.headers
    assert await score_of(score_stack.pool, bob.user_id) == (10, 1)


async def test_a_refused_request_does_not_use_up_its_key(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, active=False)
    player = await api.register()
    key = secrets.token_hex(8)
    refused_reply = await api.complete(player, action.action_id, idempotency_key=key)
    assert refused_reply.json()["code"] == Reason.ACTION_INACTIVE
    await set_active(score_stack, action, True)

    retry = await api.complete(player, action.action_id, idempotency_key=key)

    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert await score_of(score_stack.pool, player.user_id) == (10, 1)


async def test_fifty_concurrent_identical_completions_count_once(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack, base_points=9, daily_limit=1)
    player = await api.register()

    replies = await asyncio.gather(*(api.complete(player, action.action_id) for _ in range(50)))

    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] + [400] * 49, statuses
    assert {r.json()["code"] for r in replies if r.status_code == 400} == {
        Reason.DAILY_LIMIT_REACHED
    }
    assert await score_of(score_stack.pool, player.user_id) == (9, 1)
    assert len(await ledger_rows(score_stack.pool, player.user_id)) == 1
    await assert_ledger_invariants(score_stack.pool)


async def test_fifty_concurrent_retries_with_one_key_count_once_and_agree(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack, base_points=9, daily_limit=100)
    player = await api.register()
    key = secrets.token_hex(8)

    replies = await asyncio.gather(
        *(api.complete(player, action.action_id, idempotency_key=key) for _ in range(50))
    )

    assert {r.status_code for r in replies} == {200}
    assert len({r.content for r in replies}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in replies) == 49
    assert await score_of(score_stack.pool, player.user_id) == (9, 1)


async def test_grpc_idempotency_key_is_a_request_field(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, base_points=2, daily_limit=10)
    alice, bob = await api.register(), await api.register()
    key = secrets.token_hex(8)
    async with score_client(score_stack, await game_token(score_stack)) as game:
        first = await game.complete(action.action_id, user_id=alice.user_id, key=key)
        again = await game.complete(action.action_id, user_id=alice.user_id, key=key)
        # The game server's keys are its own: the same key for another user is another request.
        other_user = await refused(game.complete(action.action_id, user_id=bob.user_id, key=key))
    assert not first.replayed and again.replayed
    again.replayed = False
    assert again == first
    assert other_user.code == grpc.StatusCode.ALREADY_EXISTS
    assert other_user.reason == Reason.IDEMPOTENCY_CONFLICT
    assert await score_of(score_stack.pool, alice.user_id) == (2, 1)
    assert await score_of(score_stack.pool, bob.user_id) is None


async def test_concurrent_completions_of_one_user_never_lose_an_update(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack, base_points=7, daily_limit=1000)
    player = await api.register()
    async with score_client(score_stack, await game_token(score_stack)) as game:
        replies = await asyncio.gather(
            *(game.complete(action.action_id, user_id=player.user_id) for _ in range(50))
        )
    # Every completion saw the one before it: totals 7, 14, ..., 350 and versions 1..50.
    assert sorted((r.version, r.new_score) for r in replies) == [(n, 7 * n) for n in range(1, 51)]
    assert await score_of(score_stack.pool, player.user_id) == (350, 50)
    await assert_ledger_invariants(score_stack.pool)
