"""/ws?ticket= while Redis cannot answer (a private Redis paused with SIGSTOP, never the run's
shared one): the ticket lookup runs out of its time budget and the handshake ends in a clear
refusal, ERROR UNAVAILABLE then close 1013 (try again later), within a bound, not an unhandled
exception. Once Redis answers again a fresh ticket opens the socket."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import StackFactory
from tests.support.clients import Api, Player, Viewer
from tests.support.redis_process import RedisProcess, redis_process
from tests.support.stack import Stack

pytestmark = pytest.mark.slow

# The Redis budget is 1 s: "does not hang", not a benchmark.
BOUND_SECONDS = 8.0


@contextmanager
def _paused(redis: RedisProcess) -> Iterator[None]:
    server = redis._server
    assert server is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def _ticket(api: Api, player: Player) -> str:
    reply = await api.http.post("/api/ws-ticket", headers=player.auth)
    assert reply.status_code == 200, reply.text
    ticket: str = reply.json()["data"]["ticket"]
    return ticket


async def _open(stack: Stack, ticket: str) -> Viewer:
    viewer = await Viewer.open(f"{stack.ws_url}?ticket={ticket}")
    await asyncio.wait_for(viewer._task, BOUND_SECONDS)
    return viewer


async def test_a_ticket_redis_cannot_check_is_refused_with_try_again(
    stack_factory: StackFactory,
) -> None:
    with redis_process() as redis:
        async with stack_factory(redis_url=redis.url) as stack, Api(stack.edge_url) as api:
            player = await api.register()
            ticket = await _ticket(api, player)
            with _paused(redis):
                viewer = await _open(stack, ticket)
            assert [m["type"] for m in viewer.messages] == ["ERROR"]
            assert viewer.messages[0]["data"]["code"] == "UNAVAILABLE"
            assert viewer.connection.close_code == 1013

            # Redis is back: a fresh ticket works.
            viewer = await Viewer.open(f"{stack.ws_url}?ticket={await _ticket(api, player)}")
            try:
                await viewer.wait(lambda m: m["type"] == "CONNECTION_ACK")
            finally:
                await viewer.close()
