"""Login: uniform failures (no user enumeration), failure limits per account and per client
address that are exact under concurrency, the client address trusted only from a service, and
Argon2id hashes upgraded when the parameters change."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import grpc
import httpx
import pytest
from argon2 import extract_parameters

from auth_service.config import LoginLimits, PasswordSettings
from common.errors import from_rpc_error
from scoreboard.auth.v1 import auth_service_pb2 as pb
from scoreboard.auth.v1 import auth_service_pb2_grpc
from tests.support.clients import Api
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.stack_fixtures import stack_and_api

PASSWORD = "correct horse battery"
LIMITS = LoginLimits(per_account=3, per_address=8, window_seconds=60)


stack, client = stack_and_api(
    api="client", auth={"login_limits": LIMITS}, edge={"trust_forwarded": True}
)


def _address() -> str:
    return f"198.51.100.{secrets.randbelow(250) + 1}-{secrets.token_hex(3)}"


async def _login(api: Api, username: str, password: str, address: str) -> httpx.Response:
    return await api.http.post(
        "/api/auth/login",
        json={"username": username, "password": password},
        # The ingress appends the address it saw; anything before it is the client's own word.
        headers={"x-forwarded-for": f"10.9.9.9, {address}"},
    )


async def test_failures_are_uniform(stack: Stack, client: Api) -> None:
    player = await client.register()
    banned = await client.register()
    async with stack.pool.connection() as conn:
        await conn.execute("UPDATE users SET banned = true WHERE id = %s", (banned.user_id,))
    replies = [
        await _login(client, player.username, "wrong password!", _address()),
        await _login(client, f"nobody-{secrets.token_hex(4)}", "wrong password!", _address()),
        await _login(client, "x" * 64, "wrong password!", _address()),
        await _login(client, banned.username, PASSWORD, _address()),
    ]
    assert [(r.status_code, r.json()) for r in replies] == [
        (
            401,
            {
                "success": False,
                "error": "invalid username or password",
                "code": "INVALID_CREDENTIALS",
            },
        )
    ] * 4
    assert (await _login(client, player.username, PASSWORD, _address())).status_code == 200
    assert (await _login(client, player.username.upper(), PASSWORD, _address())).status_code == 200


@pytest.mark.parametrize("existing", [True, False])
async def test_per_account_limit_is_exact_under_concurrency(client: Api, existing: bool) -> None:
    username = (await client.register()).username if existing else f"ghost-{secrets.token_hex(4)}"
    replies = await asyncio.gather(
        *(_login(client, username, "wrong password!", _address()) for _ in range(20))
    )
    codes = Counter(r.json()["code"] for r in replies)
    assert codes == {"INVALID_CREDENTIALS": 3, "LOGIN_RATE_LIMITED": 17}
    limited = next(r for r in replies if r.status_code == 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"].startswith("too many failed logins. Try again in")
    # Locked for everyone now, the right password included (the same answer, known or not).
    again = await _login(client, username, PASSWORD, _address())
    assert (again.status_code, again.json()["code"]) == (429, "LOGIN_RATE_LIMITED")


async def test_a_successful_login_is_not_counted(client: Api) -> None:
    player = await client.register()
    for password, status in [
        ("wrong password!", 401),
        ("wrong password!", 401),
        (PASSWORD, 200),
        ("wrong password!", 401),
        (PASSWORD, 429),
    ]:
        reply = await _login(client, player.username, password, _address())
        assert reply.status_code == status, (password, reply.text)


async def test_per_address_limit(client: Api) -> None:
    address, other = _address(), _address()
    victim = await client.register()
    for _ in range(LIMITS.per_address):
        reply = await _login(client, f"ghost-{secrets.token_hex(4)}", "wrong password!", address)
        assert reply.json()["code"] == "INVALID_CREDENTIALS"
    refused = await _login(client, victim.username, PASSWORD, address)
    assert (refused.status_code, refused.json()["code"]) == (429, "LOGIN_RATE_LIMITED")
    assert (await _login(client, victim.username, PASSWORD, other)).status_code == 200


async def test_grpc_callers_cannot_choose_their_address(stack: Stack) -> None:
    """Without a service token, a stated client_address is ignored: the peer is counted."""
    async with grpc.aio.insecure_channel(stack.address("auth")) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        codes = []
        for _ in range(LIMITS.per_address + 2):
            try:
                await stub.Login(
                    pb.LoginRequest(
                        username=f"ghost-{secrets.token_hex(4)}",
                        password="wrong password!",
                        client_address=_address(),
                    ),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:
                codes.append(from_rpc_error(exc).reason)
    assert codes == ["INVALID_CREDENTIALS"] * LIMITS.per_address + ["LOGIN_RATE_LIMITED"] * 2


async def test_hash_is_upgraded_when_parameters_change(stack: Stack, client: Api) -> None:
    player = await client.register()

    async def stored() -> str:
        async with stack.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT password_hash FROM users WHERE id = %s", (player.user_id,)
            )
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    before = await stored()
    assert before.startswith("$argon2id$")
    params = extract_parameters(before)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 19456, 1)

    stronger = PasswordSettings(time_cost=3, memory_kib=24576, parallelism=1)
    await stack.stop_service("auth")
    stack.config.auth = {**stack.config.auth, "passwords": stronger}
    try:
        await stack.start_service("auth")
        await _until_auth_answers(client)
        assert (await _login(client, player.username, PASSWORD, _address())).status_code == 200
        after = await stored()
        params = extract_parameters(after)
        assert (params.time_cost, params.memory_cost) == (3, 24576)
        assert after != before
        # The upgraded hash still verifies, and is not rehashed again.
        assert (await _login(client, player.username, PASSWORD, _address())).status_code == 200
        assert await stored() == after
    finally:
        await stack.stop_service("auth")
        stack.config.auth = {"login_limits": LIMITS}
        await stack.start_service("auth")
        await _until_auth_answers(client)


async def _until_auth_answers(api: Api) -> None:
    """The edge's channel reconnects to a restarted auth_service with backoff."""

    async def answered() -> bool:
        reply = await api.http.post(
            "/api/auth/register",
            json={"username": f"probe-{secrets.token_hex(4)}", "password": PASSWORD},
        )
        return reply.status_code != 503

    await wait_for(answered, timeout=30, interval=0.2)
