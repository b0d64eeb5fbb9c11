"""Limits keyed by client address believe X-Forwarded-For only from the proxies
SCOREBOARD_FORWARDED_ALLOW_IPS names: a peer outside it cannot dodge the registration limit by
forging a new address per request, while the trusted ingress's header still tells clients
apart. A real uvicorn edge on 127.0.0.1, reached from 127.0.0.2 (trusted) and 127.0.0.3."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from auth_service.config import RegistrationLimits
from tests.conftest import StackFactory
from tests.support.stack import Stack

TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.3"
PER_ADDRESS = 2


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(
        auth={"registration_limits": RegistrationLimits(per_address=PER_ADDRESS)},
        edge={"trust_forwarded": True, "forwarded_allow_ips": (TRUSTED,)},
    ) as stack:
        yield stack


def _client(stack: Stack, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=stack.edge_url, transport=transport, timeout=15)


def _forged() -> str:
    return f"198.51.100.{secrets.randbelow(250) + 1}"


async def _register(http: httpx.AsyncClient, forwarded_for: str) -> int:
    reply = await http.post(
        "/api/auth/register",
        json={"username": f"x{secrets.token_hex(5)}", "password": "correct horse battery"},
        headers={"x-forwarded-for": forwarded_for},
    )
    return reply.status_code


async def test_an_untrusted_peer_cannot_forge_its_way_past_the_limit(stack: Stack) -> None:
    async with _client(stack, UNTRUSTED) as http:
        codes = [await _register(http, _forged()) for _ in range(PER_ADDRESS + 2)]
    assert codes == [201] * PER_ADDRESS + [429, 429]


async def test_the_trusted_proxy_s_forwarded_address_is_believed(stack: Stack) -> None:
    async with _client(stack, TRUSTED) as http:
        first, second = f"203.0.113.{secrets.randbelow(120) + 1}", "203.0.113.200"
        # The client's own entries come first; the ingress appends the address it saw.
        codes = [await _register(http, f"{_forged()}, {first}") for _ in range(PER_ADDRESS + 1)]
        assert codes == [201] * PER_ADDRESS + [429]
        assert await _register(http, second) == 201
