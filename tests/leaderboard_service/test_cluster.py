"""Redis Cluster readiness. On a server in cluster mode a command, a MULTI or a script whose keys
hash to two slots fails (CROSSSLOT); the whole leaderboard path runs on one here: events applied
and acknowledged, a rebuild with events merged, rank queries, reconcile, dead letters. (A script
may still read an undeclared key of a local slot without error, so the scripts never build a key
name: every key comes in KEYS, and every board key carries the board's hash tag.)"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common.redis_keys import BoardKeys, Keys
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.rebuild import rebuild
from leaderboard_service.scripts import Scripts
from ops.embedded import free_port, redis_server_binary
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    Board,
    Game,
    Seeded,
    at,
    event,
    pg_order,
    players,
    publish,
    redis_order,
    wait_settled,
)
from tests.support.servers import wait_for


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@asynccontextmanager
async def cluster_redis() -> AsyncIterator[str]:
    """A one-node Redis Cluster owning every slot (started without a preexec_fn, see
    tests.support.redis_process)."""
    with tempfile.TemporaryDirectory(prefix="sbtest-cluster-") as tmp:
        port = _cluster_port()
        process = await asyncio.create_subprocess_exec(
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(Path(tmp) / "nodes.conf"),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
            stdout=asyncio.subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = aioredis.Redis.from_url(url)
        try:

            async def up() -> bool:
                try:
                    return bool(await client.ping())
                except (OSError, aioredis.RedisError):
                    return False

            await wait_for(up)
            await client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")  # type: ignore[no-untyped-call]

            async def ok() -> bool:
                info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
                text = info.decode() if isinstance(info, bytes) else str(info)
                return "cluster_state:ok" in text

            await wait_for(ok)
            yield url
        finally:
            await client.aclose()
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def test_the_server_refuses_cross_slot_access() -> None:
    async with cluster_redis() as url:
        client = aioredis.Redis.from_url(url)
        try:
            with pytest.raises(aioredis.ResponseError, match="same slot"):
                await client.mset({"{a}x": 1, "{b}y": 2})
            with pytest.raises(aioredis.ResponseError, match="same slot"):
                await client.eval("return 1", 2, "{a}x", "{b}y")
            async with client.pipeline(transaction=True) as pipe:
                pipe.set("{a}x", 1)
                pipe.set("{b}y", 1)
                with pytest.raises(aioredis.ResponseError):
                    await pipe.execute()
        finally:
            await client.aclose()


def test_every_board_key_shares_the_board_hash_tag() -> None:
    keys = Keys("sb:").board("weekly")
    names = [
        name
        for name, value in vars(BoardKeys).items()
        if isinstance(value, property) and name != "channel"
    ]
    assert len(names) >= 11
    for name in names:
        value = getattr(keys, name)
        # period_keys is a tuple of keys of the period (period 1 and a later one).
        found = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple):
            found += getattr(keys.of_period(3), name)
        for key in found:
            assert key.index("{lb:weekly}") == key.index("{"), name


async def test_the_leaderboard_runs_on_redis_cluster(stack_factory: StackFactory) -> None:
    consumer = ConsumerSettings(name="cluster", block_ms=100, check_seconds=0)
    async with (
        cluster_redis() as url,
        stack_factory(redis_url=url, leaderboard={"consumer": consumer}, with_edge=False) as stack,
    ):
        keys = stack.keys.board("default")
        users = await players(stack.pool, 6)
        async with await Game.open(stack) as game:
            for user in users:
                await game.complete(user)
            await wait_settled(stack)

            async def during() -> None:
                await game.complete(users[0])

            await rebuild(stack.pool, stack.redis, Scripts(stack.redis), keys, before_swap=during)
        await wait_settled(stack)
        assert await redis_order(stack.redis, keys) == await pg_order(stack.pool)

        async with await Board.as_admin(stack) as admin:
            assert len((await admin.entries()).entries) == 6
            rank = await admin.rank(users[0])
            assert (rank.entry.rank, rank.entry.score) == (1, 14)
            assert len((await admin.around(users[3], 2)).entries) == 5
            assert (await admin.reconcile(repair=True)).mismatched == 0

        stray = Seeded(1, at(1))
        await publish(stack.redis, keys, [b"garbage", event(stray, board="other")])
        await wait_settled(stack)
        assert await stack.redis.xlen(keys.dead_letters) == 2
