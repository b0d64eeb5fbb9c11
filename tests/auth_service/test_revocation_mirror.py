"""The in-process revocation mirror (issues 15 and 16): a revocation reaches every verifier
within a second without a Redis call per request; auth keeps working through a Redis outage and
a revocation made during it takes effect once Redis answers; a wiped Redis forgets nothing; the
keeper's reload is atomic with its marker; an evicting maxmemory-policy is reported.

Outages and wipes use a redis-server of the test's own, never the run's shared one."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from auth_service.server import check_eviction_policy
from common.auth.denylist import Denylist, token_field
from common.auth.revocation_mirror import RevocationMirror
from common.config import ConfigError
from common.errors import from_rpc_error
from common.redis_keys import Keys
from ops.embedded import EmbeddedRedis
from scoreboard.auth.v1 import auth_service_pb2 as auth_pb
from scoreboard.auth.v1 import auth_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2 as score_pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.clients import Api, Player, metadata
from tests.support.servers import wait_for
from tests.support.stack import Stack

# The documented bound: a revocation is applied by every verifier within this time.
BOUND_SECONDS = 1.0
# End-to-end polls (HTTP and gRPC calls on a shared 2-core machine) get a generous bound.
GENEROUS_SECONDS = 10.0


@contextmanager
def own_redis() -> Iterator[EmbeddedRedis]:
    with tempfile.TemporaryDirectory(prefix="sbtest-mirror-redis-") as tmp:
        server = EmbeddedRedis.start(Path(tmp), persistent=False)
        try:
            yield server
        finally:
            # Never leave it stopped: a stopped process ignores SIGTERM until continued.
            os.kill(server.process.pid, signal.SIGCONT)
            server.stop()


@asynccontextmanager
async def stack_on_own_redis(stack_factory: StackFactory) -> AsyncIterator[tuple[Stack, Api]]:
    with own_redis() as server:
        async with stack_factory(redis_url=server.url) as stack, Api(stack.edge_url) as api:
            yield stack, api


def _claims(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def _mirrors(stack: Stack) -> dict[str, RevocationMirror]:
    """The revocation mirror of every process of the stack (the four services and the edge)."""
    verifiers = {name: service.deps.verifier for name, service in stack.services.items()}
    if stack.edge_server is not None:
        app = stack.edge_server.config.app
        assert isinstance(app, Starlette)
        verifiers["edge"] = app.state.edge.verifier
    mirrors = {}
    for name, verifier in verifiers.items():
        assert verifier.revocations is not None, name
        mirrors[name] = verifier.revocations
    return mirrors


async def _revoked_everywhere(stack: Stack, token: str) -> bool:
    claims = _claims(token)
    for mirror in _mirrors(stack).values():
        if not await mirror.is_revoked(claims["jti"], claims.get("sid", "")):
            return False
    return True


async def _me(api: Api, token: str) -> tuple[int, str]:
    reply: httpx.Response = await api.http.get(
        "/api/auth/me", headers={"authorization": f"Bearer {token}"}
    )
    return reply.status_code, reply.json().get("code", "")


async def _score_read(stack: Stack, token: str) -> tuple[grpc.StatusCode, str]:
    """ListActions on score_service, called directly: it needs PostgreSQL and the token's
    verification, not Redis."""
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


async def _logout(stack: Stack, token: str) -> None:
    """Logout on auth_service directly (the edge's route does the same)."""
    async with grpc.aio.insecure_channel(stack.address("auth")) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        await stub.Logout(auth_pb.LogoutRequest(), metadata=metadata(token), timeout=10)


async def _accepted(stack: Stack, api: Api, token: str) -> None:
    assert await _me(api, token) == (200, "")
    assert await _score_read(stack, token) == (grpc.StatusCode.OK, "")


async def _refused_end_to_end(stack: Stack, api: Api, token: str) -> None:
    async def refused() -> bool:
        return await _me(api, token) == (401, "TOKEN_REVOKED") and await _score_read(
            stack, token
        ) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")

    await wait_for(refused, timeout=GENEROUS_SECONDS, interval=0.05)


async def test_logout_is_refused_at_the_edge_and_at_score_service_within_a_second(
    shared_stack: Stack, api: Api
) -> None:
    player: Player = await api.register()
    bystander: Player = await api.register()
    await _accepted(shared_stack, api, player.access_token)
    reply = await api.http.post("/api/auth/logout", headers=player.auth)
    assert reply.status_code == 200, reply.text

    await wait_for(
        lambda: _revoked_everywhere(shared_stack, player.access_token),
        timeout=BOUND_SECONDS,
        interval=0.01,
    )
    await _refused_end_to_end(shared_stack, api, player.access_token)
    await _accepted(shared_stack, api, bystander.access_token)


async def test_auth_works_through_a_redis_pause_and_a_logout_during_it_counts_after(
    stack_factory: StackFactory,
) -> None:
    async with stack_on_own_redis(stack_factory) as (stack, api):
        player, bystander = await api.register(), await api.register()
        await _accepted(stack, api, player.access_token)
        await _accepted(stack, api, bystander.access_token)
        pid = int((await stack.redis.info("server"))["process_id"])

        os.kill(pid, signal.SIGSTOP)
        try:
            # Reads that need only PostgreSQL and the token keep working: no Redis per request.
            assert await _score_read(stack, bystander.access_token) == (grpc.StatusCode.OK, "")
            assert await _me(api, bystander.access_token) == (200, "")
            # The logout commits to PostgreSQL and succeeds although Redis does not answer.
            await _logout(stack, player.access_token)
            # Staleness during the outage is documented: the revocation waits for Redis.
            assert await _score_read(stack, bystander.access_token) == (grpc.StatusCode.OK, "")
        finally:
            os.kill(pid, signal.SIGCONT)

        await wait_for(
            lambda: _revoked_everywhere(stack, player.access_token),
            timeout=GENEROUS_SECONDS,
            interval=0.02,
        )
        await _refused_end_to_end(stack, api, player.access_token)
        await _accepted(stack, api, bystander.access_token)


async def test_a_wiped_redis_forgets_no_revocation_and_new_ones_work_after_the_reload(
    stack_factory: StackFactory,
) -> None:
    async with stack_on_own_redis(stack_factory) as (stack, api):
        before, after, bystander = [await api.register() for _ in range(3)]
        await _logout(stack, before.access_token)
        await wait_for(lambda: _revoked_everywhere(stack, before.access_token), timeout=5)
        # leaderboard_service's consumer does not survive a FLUSHALL (see test_sessions); it
        # plays no part here.
        await stack.stop_service("leaderboard")
        await stack.redis.flushall()

        # At once, and without waiting for the reload: still refused, never a 503.
        assert await _me(api, before.access_token) == (401, "TOKEN_REVOKED")
        assert await _score_read(stack, before.access_token) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_REVOKED",
        )
        await _accepted(stack, api, bystander.access_token)

        denylist = Denylist(stack.redis, stack.keys)
        await wait_for(denylist.is_loaded, timeout=GENEROUS_SECONDS)
        await _logout(stack, after.access_token)
        await wait_for(
            lambda: _revoked_everywhere(stack, after.access_token),
            timeout=BOUND_SECONDS,
            interval=0.01,
        )
        await _refused_end_to_end(stack, api, after.access_token)

        # A process started after the wipe learns the earlier revocation from the reload.
        await stack.stop_service("score")
        await stack.start_service("score")
        assert await _score_read(stack, before.access_token) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_REVOKED",
        )
        assert await _score_read(stack, bystander.access_token) == (grpc.StatusCode.OK, "")


async def test_the_keepers_reload_sets_the_marker_with_the_data(
    redis_url: str, run_prefix: str
) -> None:
    keys = Keys(f"{run_prefix}reload:")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        denylist = Denylist(redis, keys)
        expires = datetime.now(UTC) + timedelta(minutes=15)
        tokens = [(f"jti-{i}", expires) for i in range(5000)]
        seen: list[tuple[int, int]] = []
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                async with redis.pipeline(transaction=True) as pipe:
                    pipe.exists(keys.denylist_loaded)
                    pipe.hlen(keys.revoked)
                    marker, count = await pipe.execute()
                seen.append((int(marker), int(count)))

        watcher = asyncio.create_task(watch())
        # Written while the reload builds its copy: kept by the swap.
        await denylist.add([("written-meanwhile", expires)])
        await denylist.reload(tokens, [])
        done.set()
        await watcher
        assert seen
        # Whenever the marker was there, so was every entry (5000, the one written meanwhile
        # and the sentinel); before, the marker was absent.
        assert all(count == len(tokens) + 2 for marker, count in seen if marker), set(seen)
        assert await denylist.is_loaded()
        assert await redis.hexists(keys.revoked, token_field("written-meanwhile"))
        feed = await redis.xrevrange(keys.revocation_feed, count=1)
        assert feed is not None
        assert feed[0][1] == {b"reload": b"1"}
    finally:
        await redis.delete(keys.denylist_loaded, keys.revoked, keys.revocation_feed)
        await redis.aclose()


async def test_an_evicting_maxmemory_policy_warns_or_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with own_redis() as server:
        redis = aioredis.Redis.from_url(server.url)
        try:
            denylist = Denylist(redis, Keys("sbtest:"))
            await check_eviction_policy(denylist, require_noeviction=True)  # noeviction: fine

            await redis.config_set("maxmemory-policy", "allkeys-lru")
            with caplog.at_level(logging.WARNING, logger="scoreboard.auth"):
                await check_eviction_policy(denylist, require_noeviction=False)
            assert "maxmemory-policy is allkeys-lru" in caplog.text
            await redis.config_set("maxmemory-policy", "volatile-ttl")
            with pytest.raises(ConfigError, match="volatile-ttl"):
                await check_eviction_policy(denylist, require_noeviction=True)

            # Managed Redis may forbid CONFIG: a warning that it could not be checked.
            await redis.acl_setuser(
                "limited",
                enabled=True,
                passwords=["+secret-pass"],
                keys=["~*"],
                channels=["&*"],
                commands=["+@all", "-config"],
            )
            limited = aioredis.Redis.from_url(
                f"redis://limited:secret-pass@127.0.0.1:{server.port}/0"
            )
            caplog.clear()
            try:
                with caplog.at_level(logging.WARNING, logger="scoreboard.auth"):
                    await check_eviction_policy(
                        Denylist(limited, Keys("sbtest:")), require_noeviction=True
                    )
            finally:
                await limited.aclose()
            assert "cannot check Redis maxmemory-policy" in caplog.text
        finally:
            await redis.aclose()
