"""Refresh-token rotation and reuse detection (RFC 9700), logout, and revocations that survive
a Redis wipe, through the edge and gRPC services called directly."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import grpc
import httpx
import jwt
import pytest

from common.errors import from_rpc_error
from scoreboard.score.v1 import score_service_pb2 as score_pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.clients import Api, Player, metadata
from tests.support.redis_process import redis_process
from tests.support.servers import wait_for
from tests.support.stack import Stack


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _claims(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


async def _me(api: Api, token: str) -> httpx.Response:
    return await api.http.get("/api/auth/me", headers=_bearer(token))


async def _refresh(api: Api, refresh_token: str) -> httpx.Response:
    return await api.http.post("/api/auth/refresh", json={"refreshToken": refresh_token})


def _code(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json().get("code", "")


async def test_refresh_rotates_and_reuse_revokes_the_whole_session(
    shared_stack: Stack, api: Api
) -> None:
    player = await api.register()
    first = await _refresh(api, player.refresh_token)
    assert first.status_code == 200, first.text
    one = first.json()["data"]
    assert one["refreshToken"] != player.refresh_token
    assert _claims(one["accessToken"])["sid"] == _claims(player.access_token)["sid"]
    second = await _refresh(api, one["refreshToken"])
    assert second.status_code == 200, second.text
    two = second.json()["data"]
    assert (await _me(api, two["accessToken"])).status_code == 200

    # The first refresh token again: someone holds a copy. The whole family ends.
    reused = await _refresh(api, player.refresh_token)
    assert _code(reused) == (401, "REFRESH_TOKEN_REUSED")
    assert _code(await _refresh(api, two["refreshToken"])) == (401, "REFRESH_TOKEN_INVALID")
    # And every access token of the session, not only the refresh tokens.
    for token in (player.access_token, one["accessToken"], two["accessToken"]):
        assert _code(await _me(api, token)) == (401, "TOKEN_REVOKED")

    family = _claims(player.access_token)["sid"]
    async with shared_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), count(revoked_at), count(used_at) FROM refresh_tokens"
            " WHERE family_id = %s",
            (family,),
        )
        assert await cur.fetchone() == (3, 3, 2)
        cur = await conn.execute(
            "SELECT count(*) FROM revoked_sessions WHERE family_id = %s", (family,)
        )
        assert await cur.fetchone() == (1,)
        # Stored hashed: the token itself is nowhere in the table.
        cur = await conn.execute(
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = %s",
            (hashlib.sha256(player.refresh_token.encode()).digest(),),
        )
        assert await cur.fetchone() == (1,)
        cur = await conn.execute(
            "SELECT count(*) FROM refresh_tokens r WHERE position(%s in r::text) > 0",
            (player.refresh_token,),
        )
        assert await cur.fetchone() == (0,)


async def test_other_sessions_of_the_user_survive_a_reuse(shared_stack: Stack, api: Api) -> None:
    player = await api.register()
    login = await api.http.post(
        "/api/auth/login", json={"username": player.username, "password": "correct horse battery"}
    )
    other_session = login.json()["data"]
    successor = await _refresh(api, player.refresh_token)
    assert successor.status_code == 200
    # Its successor used, the first token again is a reuse (not a retry within the grace).
    assert (await _refresh(api, successor.json()["data"]["refreshToken"])).status_code == 200
    assert _code(await _refresh(api, player.refresh_token)) == (401, "REFRESH_TOKEN_REUSED")
    assert (await _me(api, other_session["accessToken"])).status_code == 200
    assert (await _refresh(api, other_session["refreshToken"])).status_code == 200


async def test_concurrent_use_of_one_refresh_token_leaves_exactly_one_valid(
    shared_stack: Stack, api: Api
) -> None:
    """One rotation wins; the others are retries within the reuse grace (test_refresh_grace.py):
    each gets a pair of the same session, each retiring the one before, so exactly one refresh
    token of the session stays valid. Without a grace, exactly one gets through (same file)."""
    player = await api.register()
    replies = await asyncio.gather(*(_refresh(api, player.refresh_token) for _ in range(8)))
    assert [r.status_code for r in replies] == [200] * 8, [r.text for r in replies]
    family = _claims(player.access_token)["sid"]
    assert {_claims(r.json()["data"]["accessToken"])["sid"] for r in replies} == {family}
    async with shared_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NULL), count(*)"
            " FROM refresh_tokens WHERE family_id = %s",
            (family,),
        )
        assert await cur.fetchone() == (1, 9)


@pytest.mark.parametrize("token", ["", "x" * 257, "not-a-token-we-issued"])
async def test_unknown_or_malformed_refresh_token(api: Api, token: str) -> None:
    reply = await _refresh(api, token)
    expected = 422 if len(token) > 256 else 401
    assert reply.status_code == expected, reply.text
    assert reply.json()["success"] is False


async def test_refresh_cookie_needs_the_csrf_header(shared_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.edge_url, timeout=15) as http:
        reply = await http.post(
            "/api/auth/register",
            json={"username": "cookie-user", "password": "correct horse battery"},
        )
        assert reply.status_code == 201
        cookie = reply.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/api/auth" in cookie
        refused = await http.post("/api/auth/refresh", json={})
        assert _code(refused) == (403, "CSRF_HEADER_REQUIRED")
        rotated = await http.post(
            "/api/auth/refresh", json={}, headers={"x-requested-with": "scoreboard"}
        )
        assert rotated.status_code == 200, rotated.text
        assert rotated.headers["cache-control"] == "no-store"


async def test_logout_ignores_a_refresh_token_of_another_user(
    shared_stack: Stack, api: Api
) -> None:
    alice, mallory = await api.register(), await api.register()
    reply = await api.http.post(
        "/api/auth/logout",
        json={"refreshToken": alice.refresh_token},
        headers=_bearer(mallory.access_token),
    )
    assert reply.status_code == 200
    assert (await _refresh(api, alice.refresh_token)).status_code == 200
    assert _code(await _me(api, mallory.access_token)) == (401, "TOKEN_REVOKED")


async def _grpc_read(stack: Stack, token: str) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        try:
            await stub.ListActions(
                score_pb.ListActionsRequest(), metadata=metadata(token), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            return error.code, error.reason
    return grpc.StatusCode.OK, ""


async def test_logout_survives_a_redis_wipe(stack_factory: StackFactory) -> None:
    with redis_process() as own:
        async with stack_factory(redis_url=own.url) as stack:
            api = Api(stack.edge_url)
            try:
                await _logout_then_wipe(stack, api)
            finally:
                await api.close()


async def _logout_then_wipe(stack: Stack, api: Api) -> None:
    player = await api.register()
    bystander = await api.register()
    rotated = (await _refresh(api, player.refresh_token)).json()["data"]
    older, current = player.access_token, rotated["accessToken"]
    logout = await api.http.post(
        "/api/auth/logout", json={"refreshToken": rotated["refreshToken"]}, headers=_bearer(current)
    )
    assert logout.status_code == 200, logout.text

    async def refused_everywhere() -> None:
        for token in (current, older):
            assert _code(await _me(api, token)) == (401, "TOKEN_REVOKED")
            assert await _grpc_read(stack, token) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "TOKEN_REVOKED",
            )
        assert _code(await _refresh(api, rotated["refreshToken"])) == (
            401,
            "REFRESH_TOKEN_INVALID",
        )

    await refused_everywhere()
    # leaderboard_service's consumer does not survive a FLUSHALL yet (its blocked XREADGROUP
    # fails with "UNBLOCKED the stream key no longer exists" and the task dies); it plays no
    # part here, so it is stopped first.
    await stack.stop_service("leaderboard")
    await stack.redis.flushall()
    # Every process keeps its in-memory revocation mirror through the wipe
    # (common/auth/revocation_mirror.py), so the revoked token stays refused (401) while
    # auth_service reloads the list from PostgreSQL; a 503 (fail closed) would be tolerated,
    # an accept never.
    seen: list[tuple[int, str]] = []

    async def reloaded() -> bool:
        reply = await _me(api, current)
        seen.append(_code(reply))
        return reply.status_code == 401

    await wait_for(reloaded, timeout=20)
    assert all(status in (401, 503) for status, _ in seen), seen
    assert all(code == "UNAVAILABLE" for status, code in seen if status == 503), seen
    await refused_everywhere()
    # Nothing was lost and nothing is refused wholesale: other users' tokens still pass.
    assert (await _me(api, bystander.access_token)).status_code == 200
    assert await _grpc_read(stack, bystander.access_token) == (grpc.StatusCode.OK, "")


async def test_a_revocation_missing_from_redis_is_copied_back(
    shared_stack: Stack, api: Api
) -> None:
    """A Redis write lost after the revocation committed (the marker still present): the
    keeper's periodic sync restores it from PostgreSQL."""
    player: Player = await api.register()
    logout = await api.http.post("/api/auth/logout", headers=player.auth)
    assert logout.status_code == 200
    claims = _claims(player.access_token)
    keys = shared_stack.keys
    assert (
        await shared_stack.redis.delete(
            keys.denied_token(claims["jti"]), keys.denied_session(claims["sid"])
        )
        == 2
    )

    async def restored() -> bool:
        return bool(
            await shared_stack.redis.exists(
                keys.denied_token(claims["jti"]), keys.denied_session(claims["sid"])
            )
            == 2
        )

    await wait_for(restored, timeout=20, interval=0.2)
    assert _code(await _me(api, player.access_token)) == (401, "TOKEN_REVOKED")
