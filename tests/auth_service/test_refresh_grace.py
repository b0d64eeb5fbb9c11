"""A refresh whose response was lost, retried within the reuse grace
(SCOREBOARD_REFRESH_REUSE_GRACE_SECONDS, 10 s by default), gets a new pair for the same session
instead of revoking it; the successor the client never received is retired, so presenting it
later still ends the session. After the grace, or once the successor was used, a reuse revokes
the session as before. Through the edge, against real auth_service and PostgreSQL. Concurrent
retries: test_sessions.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import StackFactory
from tests.support.clients import Api
from tests.support.stack import Stack


def _sid(token: str) -> str:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return str(claims["sid"])


async def _refresh(api: Api, refresh_token: str) -> httpx.Response:
    return await api.http.post("/api/auth/refresh", json={"refreshToken": refresh_token})


async def _me(api: Api, token: str) -> int:
    reply = await api.http.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})
    return reply.status_code


def _code(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json().get("code", "")


async def _live_tokens(stack: Stack, family: str) -> int:
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM refresh_tokens WHERE family_id = %s"
            " AND used_at IS NULL AND revoked_at IS NULL",
            (family,),
        )
        row = await cur.fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


@pytest.fixture(scope="module")
async def short_grace(stack_factory: StackFactory) -> AsyncIterator[tuple[Stack, Api]]:
    async with stack_factory(auth={"refresh_reuse_grace_seconds": 0.5}) as stack:
        api = Api(stack.edge_url)
        try:
            yield stack, api
        finally:
            await api.close()


async def test_a_retried_refresh_within_the_grace_keeps_the_session(
    shared_stack: Stack, api: Api
) -> None:
    player = await api.register()
    lost = await _refresh(api, player.refresh_token)  # the response never reached the client
    assert lost.status_code == 200, lost.text
    retry = await _refresh(api, player.refresh_token)
    assert retry.status_code == 200, retry.text
    pair = retry.json()["data"]
    assert pair["refreshToken"] not in (player.refresh_token, lost.json()["data"]["refreshToken"])
    assert _sid(pair["accessToken"]) == _sid(player.access_token)
    assert await _me(api, pair["accessToken"]) == 200
    assert await _me(api, player.access_token) == 200  # the session was not revoked
    # One refresh token of the session is valid: the retry's.
    assert await _live_tokens(shared_stack, _sid(player.access_token)) == 1
    onward = await _refresh(api, pair["refreshToken"])
    assert onward.status_code == 200, onward.text


async def test_the_lost_successor_presented_later_revokes_the_session(api: Api) -> None:
    player = await api.register()
    lost = (await _refresh(api, player.refresh_token)).json()["data"]
    retry = (await _refresh(api, player.refresh_token)).json()["data"]
    # Whoever holds the successor the client never got (a thief's copy) is caught.
    assert _code(await _refresh(api, lost["refreshToken"])) == (401, "REFRESH_TOKEN_REUSED")
    assert _code(await _refresh(api, retry["refreshToken"])) == (401, "REFRESH_TOKEN_INVALID")
    for token in (player.access_token, lost["accessToken"], retry["accessToken"]):
        reply = await api.http.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})
        assert _code(reply) == (401, "TOKEN_REVOKED")


async def test_a_retry_after_the_successor_was_used_revokes_the_session(api: Api) -> None:
    player = await api.register()
    received = (await _refresh(api, player.refresh_token)).json()["data"]
    assert (await _refresh(api, received["refreshToken"])).status_code == 200
    # Still within the grace, but the client did get its successor: this is a reuse.
    assert _code(await _refresh(api, player.refresh_token)) == (401, "REFRESH_TOKEN_REUSED")
    assert await _me(api, player.access_token) == 401


async def test_after_the_grace_a_reuse_revokes_the_session(
    short_grace: tuple[Stack, Api],
) -> None:
    _, api = short_grace
    player = await api.register()
    assert (await _refresh(api, player.refresh_token)).status_code == 200
    await asyncio.sleep(1.0)
    assert _code(await _refresh(api, player.refresh_token)) == (401, "REFRESH_TOKEN_REUSED")
    assert await _me(api, player.access_token) == 401


async def test_without_a_grace_every_reuse_revokes(stack_factory: StackFactory) -> None:
    async with stack_factory(auth={"refresh_reuse_grace_seconds": 0.0}) as stack:
        api = Api(stack.edge_url)
        try:
            player = await api.register()
            replies = await asyncio.gather(*(_refresh(api, player.refresh_token) for _ in range(4)))
            assert sorted(r.status_code for r in replies) == [200, 401, 401, 401]
            assert await _me(api, player.access_token) == 401
        finally:
            await api.close()
