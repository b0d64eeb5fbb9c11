"""No call waits on Redis without a limit (DESIGN decision 13): with the stack's Redis paused
(SIGSTOP) or its link black-holed, requests through the edge and gRPC calls without a deadline
are answered within a bound, by success (the completion limit falls back per replica,
PostgreSQL commits) or by 503/UNAVAILABLE with a Retry-After; nothing hangs. When Redis comes
back, everything works again.

A private redis-server of the test's own: the run's shared Redis is never paused."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

import grpc
import httpx
import pytest

from bench.faults.proxy import tcp_proxy
from common.errors import from_rpc_error
from ops.embedded import EmbeddedRedis
from scoreboard.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.clients import Api, Player
from tests.support.stack import Stack

pytestmark = pytest.mark.slow

T = TypeVar("T")
# "Does not hang", not a benchmark: the Redis budget is 1 s, the edge's upstream deadline 5 s.
BOUND_SECONDS = 8.0
PASSWORD = "correct horse battery"


@contextmanager
def _private_redis() -> Iterator[EmbeddedRedis]:
    with tempfile.TemporaryDirectory(prefix="sbtest-budget-") as folder:
        server = EmbeddedRedis.start(Path(folder), persistent=False)
        try:
            yield server
        finally:
            _signal(server, signal.SIGCONT)
            server.stop()


def _signal(server: EmbeddedRedis, sig: signal.Signals) -> None:
    if server.process.poll() is None:
        os.kill(server.process.pid, sig)


async def _bounded(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, BOUND_SECONDS)


def _assert_unavailable(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.json()["code"] == "UNAVAILABLE", reply.text
    assert int(reply.headers["retry-after"]) >= 1


async def _login_over_grpc(stack: Stack, player: Player) -> grpc.StatusCode:
    """AuthService.Login with no deadline: its login limiter needs Redis."""
    async with grpc.aio.insecure_channel(stack.address("auth")) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        try:
            await stub.Login(
                auth_service_pb2.LoginRequest(username=player.username, password=PASSWORD)
            )
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
        else:
            return grpc.StatusCode.OK
    if error.code == grpc.StatusCode.UNAVAILABLE:
        assert int(error.metadata["retry_after"]) >= 1
    return error.code


async def _check_degraded(stack: Stack, api: Api, player: Player) -> None:
    """What every request must do while Redis cannot answer."""
    complete = await _bounded(api.complete(player, "win-match"))
    # Scoring goes on (the limit falls back to this replica, PostgreSQL commits), or refuses
    # with a Retry-After (the token check or another Redis need could not be served).
    if complete.status_code == 200:
        assert complete.json()["data"]["increment"] > 0, complete.text
    else:
        _assert_unavailable(complete)
    ticket = await _bounded(api.http.post("/api/ws-ticket", headers=player.auth))
    _assert_unavailable(ticket)
    assert await _bounded(_login_over_grpc(stack, player)) == grpc.StatusCode.UNAVAILABLE


async def _check_recovered(stack: Stack, api: Api) -> None:
    """Once Redis answers again: new accounts, completions, tickets and logins all work."""
    await _eventually(lambda: _registers(api))
    player = await api.register()
    await _eventually(lambda: _succeeds(api.complete(player, "complete-quest")))
    await _eventually(lambda: _succeeds(api.http.post("/api/ws-ticket", headers=player.auth)))
    code = await _bounded(_login_over_grpc(stack, player))
    assert code == grpc.StatusCode.OK


async def _registers(api: Api) -> bool:
    reply = await api.http.post(
        "/api/auth/register", json={"username": f"r{os.urandom(4).hex()}", "password": PASSWORD}
    )
    return reply.status_code == 201


async def _succeeds(request: Awaitable[httpx.Response]) -> bool:
    reply = await request
    return reply.status_code == 200


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not await _bounded(check()):
        assert loop.time() < end, "did not recover"
        await asyncio.sleep(0.2)


@asynccontextmanager
async def _stack_api(
    stack_factory: StackFactory, redis_url: str
) -> AsyncIterator[tuple[Stack, Api]]:
    async with stack_factory(redis_url=redis_url) as stack:
        api = Api(stack.edge_url)
        try:
            yield stack, api
        finally:
            await api.close()


async def test_paused_redis_costs_a_bounded_wait(stack_factory: StackFactory) -> None:
    with _private_redis() as redis:
        async with _stack_api(stack_factory, redis.url) as (stack, api):
            player = await api.register()
            _signal(redis, signal.SIGSTOP)
            try:
                await _check_degraded(stack, api, player)
            finally:
                _signal(redis, signal.SIGCONT)
            await _check_recovered(stack, api)


async def test_black_holed_redis_link_costs_a_bounded_wait(stack_factory: StackFactory) -> None:
    with _private_redis() as redis:
        async with (
            tcp_proxy("127.0.0.1", redis.port) as proxy,
            _stack_api(stack_factory, proxy.url) as (stack, api),
        ):
            player = await api.register()
            proxy.black_hole()
            try:
                await _check_degraded(stack, api, player)
            finally:
                proxy.forward()
            await _check_recovered(stack, api)
