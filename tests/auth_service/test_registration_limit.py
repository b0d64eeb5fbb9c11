"""Registration is limited per client address (each account costs an Argon2 hash, and a flood
of accounts farms a leaderboard): exact under concurrency, the address taken from the edge,
invalid or already-taken requests not counted, users of other addresses unaffected."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import grpc
import httpx

from auth_service.config import RegistrationLimits
from common.errors import from_rpc_error
from scoreboard.auth.v1 import auth_service_pb2 as pb
from scoreboard.auth.v1 import auth_service_pb2_grpc
from tests.support.clients import Api
from tests.support.stack import Stack
from tests.support.stack_fixtures import stack_and_api

PER_ADDRESS = 4


stack, client = stack_and_api(
    api="client",
    auth={"registration_limits": RegistrationLimits(per_address=PER_ADDRESS)},
    edge={"trust_forwarded": True},
)


def _address() -> str:
    return f"203.0.113.{secrets.randbelow(250) + 1}-{secrets.token_hex(3)}"


async def _register(
    api: Api, address: str, username: str | None = None, password: str = "correct horse battery"
) -> httpx.Response:
    return await api.http.post(
        "/api/auth/register",
        json={"username": username or f"r{secrets.token_hex(5)}", "password": password},
        headers={"x-forwarded-for": address},
    )


async def _users(stack: Stack) -> int:
    async with stack.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM users")
        row = await cur.fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


async def test_concurrent_registrations_from_one_address_stop_at_the_limit(
    stack: Stack, client: Api
) -> None:
    address = _address()
    before = await _users(stack)
    replies = await asyncio.gather(*(_register(client, address) for _ in range(PER_ADDRESS * 3)))
    assert Counter(r.status_code for r in replies) == {201: PER_ADDRESS, 429: PER_ADDRESS * 2}
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.json()["code"] == "REGISTRATION_RATE_LIMITED"
    assert refused.json()["success"] is False
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    # Exactly the accepted ones exist; another address is not affected.
    assert await _users(stack) == before + PER_ADDRESS
    assert (await _register(client, _address())).status_code == 201


async def test_invalid_and_taken_requests_do_not_use_up_the_limit(
    stack: Stack, client: Api
) -> None:
    address = _address()
    taken = await _register(client, address)
    assert taken.status_code == 201
    name = taken.json()["data"]["user"]["username"]
    for _ in range(PER_ADDRESS + 1):
        assert (await _register(client, address, username=name)).status_code == 409
        assert (await _register(client, address, password="short")).status_code in (400, 422)
    for _ in range(PER_ADDRESS - 1):
        assert (await _register(client, address)).status_code == 201
    assert (await _register(client, address)).status_code == 429


async def test_a_direct_caller_cannot_claim_another_address(stack: Stack) -> None:
    """Without a service token the stated client address is ignored: the limit counts the
    caller's own peer, so rotating the field does not get around it."""
    async with grpc.aio.insecure_channel(stack.address("auth")) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        codes = []
        # The stack's earlier tests registered through the edge with forwarded addresses, so
        # this peer (127.0.0.1) starts with the whole limit.
        for _ in range(PER_ADDRESS + 1):
            try:
                await auth.Register(
                    pb.RegisterRequest(
                        username=f"d{secrets.token_hex(5)}",
                        password="correct horse battery",
                        client_address=_address(),
                    )
                )
                codes.append("ok")
            except grpc.aio.AioRpcError as exc:
                codes.append(from_rpc_error(exc).reason)
    assert codes == ["ok"] * PER_ADDRESS + ["REGISTRATION_RATE_LIMITED"]
