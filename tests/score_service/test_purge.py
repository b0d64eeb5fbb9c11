"""The purge: idempotency keys go after 48 hours (never before 24), tickets an hour after they
expire; recent ones stay and keep working."""

from __future__ import annotations

import secrets

import pytest

from common.config import ConfigError, Env
from score_service.config import PurgeSettings, Settings
from score_service.purge import Purger
from tests.conftest import StackFactory
from tests.score_service.helpers import create_action, score_of
from tests.support.clients import Api
from tests.support.servers import wait_for
from tests.support.stack import Stack


async def _age_key(stack: Stack, key: str, hours: float) -> None:
    async with stack.pool.connection() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - make_interval(secs => %s)"
            " WHERE key = %s",
            (hours * 3600, key),
        )


async def _keys(stack: Stack, *keys: str) -> set[str]:
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT key FROM idempotency_keys WHERE key = ANY(%s)", (list(keys),)
        )
        return {str(r[0]) for r in await cur.fetchall()}


async def test_purge_removes_only_what_is_past_its_retention(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, base_points=1, daily_limit=10)
    ticketed = await create_action(score_stack, requires_ticket=True, daily_limit=10)
    player = await api.register()
    old_key, recent_key = f"old-{secrets.token_hex(6)}", f"recent-{secrets.token_hex(6)}"
    for key in (old_key, recent_key):
        reply = await api.complete(player, action.action_id, idempotency_key=key)
        assert reply.status_code == 200
    await _age_key(score_stack, old_key, 49)
    await _age_key(score_stack, recent_key, 25)
    tickets = []
    for _ in range(3):
        started = await api.http.post(
            "/api/actions/start", json={"actionId": ticketed.action_id}, headers=player.auth
        )
        tickets.append(started.json()["data"]["ticket"].partition(".")[0])
    async with score_stack.pool.connection() as conn:
        for ticket_id, expired_ago in ((tickets[0], "2 hours"), (tickets[1], "10 minutes")):
            await conn.execute(
                "UPDATE action_tickets SET expires_at = now() - %s::interval WHERE id = %s",
                (expired_ago, ticket_id),
            )

    result = await Purger(score_stack.pool, PurgeSettings(batch_size=1)).purge_once()

    assert (result.idempotency_keys, result.tickets) == (1, 1)
    assert await _keys(score_stack, old_key, recent_key) == {recent_key}
    async with score_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id::text FROM action_tickets WHERE id = ANY(%s::uuid[])", (tickets,)
        )
        assert {str(r[0]) for r in await cur.fetchall()} == set(tickets[1:])
    # A key kept 25 hours still replays; the purged one is a new request again.
    replay = await api.complete(player, action.action_id, idempotency_key=recent_key)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert await score_of(score_stack.pool, player.user_id) == (2, 2)
    anew = await api.complete(player, action.action_id, idempotency_key=old_key)
    assert "idempotent-replayed" not in anew.headers
    assert await score_of(score_stack.pool, player.user_id) == (3, 3)


async def test_the_service_purges_periodically(stack_factory: StackFactory) -> None:
    async with stack_factory(score={"purge": PurgeSettings(interval_seconds=0.2)}) as stack:
        action = await create_action(stack, daily_limit=10)
        api = Api(stack.edge_url)
        try:
            player = await api.register()
            for key in ("periodic-old", "periodic-new"):
                assert (
                    await api.complete(player, action.action_id, idempotency_key=key)
                ).is_success
        finally:
            await api.close()
        await _age_key(stack, "periodic-old", 48.5)

        async def purged() -> bool:
            return await _keys(stack, "periodic-old", "periodic-new") == {"periodic-new"}

        await wait_for(purged)


def test_keys_cannot_be_kept_less_than_a_day() -> None:
    base = {
        "SCOREBOARD_DATABASE_URL": "postgresql://x/y",
        "SCOREBOARD_REDIS_URL": "redis://x",
        "SCOREBOARD_JWKS_FILE": "/tmp/jwks.json",
        "SCOREBOARD_TICKET_SECRET": "s" * 32,
    }
    assert Settings.from_env(Env(base)).purge.idempotency_retention_hours == 48
    with pytest.raises(ConfigError, match="IDEMPOTENCY_RETENTION_HOURS"):
        Settings.from_env(Env({**base, "SCOREBOARD_IDEMPOTENCY_RETENTION_HOURS": "12"}))
