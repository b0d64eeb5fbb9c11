"""POST /api/actions/complete: 100 requests per minute per user, exact under concurrency and
shared by every edge replica (one Redis script); the 429 body and headers; and the documented
policy when Redis is unreachable (this route keeps limiting per replica, login refuses)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn

from common.config import VerifierSettings
from edge.app import create_app
from edge.server import build_config
from tests.conftest import StackFactory
from tests.support.clients import Api, Player
from tests.support.redis_process import redis_process
from tests.support.stack import KeyFiles, Stack, edge_settings


@asynccontextmanager
async def second_edge(stack: Stack) -> AsyncIterator[str]:
    """Another edge replica of the same stack (its own process state, the same Redis)."""
    settings = edge_settings(stack)
    app = create_app(settings)
    server = uvicorn.Server(build_config(settings, app))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def _complete(http: httpx.AsyncClient, player: Player, action: str) -> httpx.Response:
    return await http.post("/api/actions/complete", json={"actionId": action}, headers=player.auth)


async def test_exactly_100_of_150_concurrent_requests_pass(shared_stack: Stack, api: Api) -> None:
    player = await api.register()
    bystander = await api.register()
    async with second_edge(shared_stack) as other_url:
        urls = [shared_stack.edge_url, other_url]
        clients = [httpx.AsyncClient(base_url=urls[n % 2], timeout=30) for n in range(20)]
        try:
            shares = [8] * 10 + [7] * 10  # 150 requests over 20 clients on two replicas

            async def run(client: httpx.AsyncClient, count: int) -> list[httpx.Response]:
                return [await _complete(client, player, "win-match") for _ in range(count)]

            batches = await asyncio.gather(
                *(run(c, n) for c, n in zip(clients, shares, strict=True))
            )
            replies = [reply for batch in batches for reply in batch]
            bystander_reply = await _complete(clients[1], bystander, "win-match")
        finally:
            for client in clients:
                await client.aclose()

    assert len(replies) == 150
    statuses = Counter(r.status_code for r in replies)
    assert statuses[429] == 50, statuses
    # The 100 let through reached the score service, which counted the first and refused the
    # rest by its own rules (a slow machine may see an upstream timeout, never a 429 or a 5xx
    # of the edge itself).
    assert statuses[200] >= 1, statuses
    assert set(statuses) <= {200, 400, 429, 503, 504}, statuses
    assert {r.json()["code"] for r in replies if r.status_code == 400} <= {
        "COOLDOWN_ACTIVE",
        "DAILY_LIMIT_REACHED",
    }
    for reply in replies:
        assert reply.headers["ratelimit-policy"] == '"actions";q=100;w=60'
        assert re.fullmatch(r'"actions";r=\d+;t=\d+', reply.headers["ratelimit"])
    limited = [r for r in replies if r.status_code == 429]
    for reply in limited:
        retry = int(reply.headers["retry-after"])
        assert 1 <= retry <= 60
        assert reply.json() == {
            "success": False,
            "error": f"Rate limit exceeded. Try again in {retry} seconds.",
            "code": "RATE_LIMITED",
        }
        assert reply.headers["ratelimit"].startswith('"actions";r=0;')
    remaining = sorted(
        int(r.headers["ratelimit"].split("r=")[1].split(";")[0])
        for r in replies
        if r.status_code != 429
    )
    assert remaining == list(range(100))  # every slot handed out exactly once
    # Another user has a budget of their own.
    assert bystander_reply.status_code == 200, bystander_reply.text


async def test_redis_unreachable_policy(stack_factory: StackFactory, key_files: KeyFiles) -> None:
    """This route keeps limiting in each replica's memory; login and tickets refuse (503). The
    denylist is off here (as with an external issuer): with it on, every token check already
    refuses."""
    with redis_process() as redis:
        verifier = VerifierSettings(
            "scoreboard", "scoreboard", jwks_file=key_files.jwks, denylist=False
        )
        async with stack_factory(
            redis_url=redis.url,
            edge={"verifier": verifier, "actions_per_minute": 3},
            score={"verifier": verifier},
        ) as stack:
            api = Api(stack.edge_url)
            try:
                player = await api.register()
                redis.stop()
                replies = [await api.complete(player, "share-replay") for _ in range(5)]
                login = await api.http.post(
                    "/api/auth/login",
                    json={"username": player.username, "password": "correct horse battery"},
                )
                ticket = await api.http.post("/api/ws-ticket", headers=player.auth)
            finally:
                await api.close()
        statuses = [r.status_code for r in replies]
        # Scoring goes on without Redis (PostgreSQL commits; the outbox keeps the events), and
        # the in-memory window refuses past the limit.
        assert statuses == [200, 400, 400, 429, 429], [r.text for r in replies]
        assert replies[3].json()["code"] == "RATE_LIMITED"
        assert login.status_code == 503
        assert login.json()["code"] == "UNAVAILABLE"
        assert (ticket.status_code, ticket.json()["code"]) == (503, "UNAVAILABLE")
