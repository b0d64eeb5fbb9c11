"""Service accounts: created, rotated, disabled and enabled from the CLI (a real subprocess on
the stack's database), client credentials with scope narrowing, secrets stored hashed, and
failed calls limited per address."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
import jwt
import pytest

from auth_service.config import LoginLimits
from common.errors import ServiceError, from_rpc_error
from scoreboard.auth.v1 import auth_service_pb2 as auth_pb
from scoreboard.auth.v1 import auth_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2 as score_pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.clients import Api, metadata
from tests.support.processes import run_process
from tests.support.stack import Stack

FAILURES_PER_ADDRESS = 4


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    limits = LoginLimits(service_per_address=FAILURES_PER_ADDRESS)
    async with stack_factory(auth={"login_limits": limits}) as running:
        yield running


async def cli(stack: Stack, *args: str) -> tuple[int, dict[str, str], str]:
    env = {**os.environ, "SCOREBOARD_DATABASE_URL": stack.config.database_url}
    code, out, err = await run_process(sys.executable, "-m", "auth_service", *args, env=env)
    pairs = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    return code, pairs, err


async def issue(
    stack: Stack, client_id: str, secret: str, scopes: tuple[str, ...] = ()
) -> dict[str, object] | ServiceError:
    async with grpc.aio.insecure_channel(stack.address("auth")) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        try:
            reply = await stub.IssueServiceToken(
                auth_pb.IssueServiceTokenRequest(
                    client_id=client_id, client_secret=secret, scopes=list(scopes)
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            return from_rpc_error(exc)
    claims: dict[str, object] = jwt.decode(reply.access_token, options={"verify_signature": False})
    claims["_token"] = reply.access_token
    return claims


async def complete_for(stack: Stack, token: str, user_id: str) -> str:
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        try:
            reply = await stub.CompleteAction(
                score_pb.CompleteActionRequest(
                    user_id=user_id, action_id="daily-login", idempotency_key=str(uuid.uuid4())
                ),
                metadata=metadata(token),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            return from_rpc_error(exc).reason
    return f"OK:{reply.new_score}"


async def test_create_narrow_rotate_disable_enable(stack: Stack) -> None:
    code, created, _ = await cli(
        stack,
        "create-service-account",
        "--client-id",
        "arena-7",
        "--scopes",
        "scores:write, leaderboard:read",
    )
    assert code == 0
    assert created["client_id"] == "arena-7"
    secret = created["client_secret"]
    assert len(secret) >= 32

    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT secret_hash, scopes FROM service_accounts WHERE client_id = 'arena-7'"
        )
        row = await cur.fetchone()
    assert row is not None
    assert str(row[0]).startswith("$argon2id$") and secret not in str(row[0])
    assert row[1] == ["leaderboard:read", "scores:write"]

    full = await issue(stack, "arena-7", secret)
    assert isinstance(full, dict)
    assert full["sub"] == "svc:arena-7" and full["role"] == "service"
    assert set(str(full["scope"]).split()) == {"leaderboard:read", "scores:write"}
    narrowed = await issue(stack, "arena-7", secret, ("leaderboard:read",))
    assert isinstance(narrowed, dict)
    assert narrowed["scope"] == "leaderboard:read"
    refused = await issue(stack, "arena-7", secret, ("leaderboard:read", "admin"))
    assert isinstance(refused, ServiceError)
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )

    # The scopes decide what each token may do: acting for a player needs scores:write.
    api = Api(stack.edge_url)
    try:
        player = await api.register()
    finally:
        await api.close()
    assert await complete_for(stack, str(narrowed["_token"]), player.user_id) == "PERMISSION_DENIED"
    assert await complete_for(stack, str(full["_token"]), player.user_id) == "OK:10"

    code, rotated, _ = await cli(stack, "rotate-service-secret", "--client-id", "arena-7")
    assert code == 0 and rotated["client_secret"] != secret
    old = await issue(stack, "arena-7", secret)
    assert isinstance(old, ServiceError) and old.reason == "INVALID_CREDENTIALS"
    assert isinstance(await issue(stack, "arena-7", rotated["client_secret"]), dict)

    assert (await cli(stack, "disable-service-account", "--client-id", "arena-7"))[0] == 0
    disabled = await issue(stack, "arena-7", rotated["client_secret"])
    assert isinstance(disabled, ServiceError) and disabled.reason == "INVALID_CREDENTIALS"
    assert (await cli(stack, "enable-service-account", "--client-id", "arena-7"))[0] == 0
    assert isinstance(await issue(stack, "arena-7", rotated["client_secret"]), dict)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("create-service-account", "--client-id", "Bad Id", "--scopes", "admin"), 2, "client id"),
        (("create-service-account", "--client-id", "ok", "--scopes", "root"), 2, "unknown scopes"),
        (
            (
                "create-service-account",
                "--client-id",
                "ok",
                "--scopes",
                "admin",
                "--secret",
                "short",
            ),
            2,
            "at least 24",
        ),
        (("rotate-service-secret", "--client-id", "missing"), 1, "no service account"),
        (("disable-service-account", "--client-id", "missing"), 1, "no service account"),
    ],
)
async def test_cli_refuses_bad_input(
    stack: Stack, args: tuple[str, ...], code: int, message: str
) -> None:
    returned, _, err = await cli(stack, *args)
    assert returned == code
    assert message in err
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM service_accounts WHERE client_id IN ('ok', 'missing')"
        )
        assert await cur.fetchone() == (0,)


async def test_failed_client_credentials_are_limited_per_address(stack: Stack) -> None:
    # Other tests of this module failed on purpose from the same address: start afresh.
    await stack.redis.delete(stack.keys.rate_limit("client-credentials", "127.0.0.1"))
    reasons = []
    for _ in range(FAILURES_PER_ADDRESS + 1):
        result = await issue(stack, "game-server", "not the secret")
        assert isinstance(result, ServiceError)
        reasons.append(result.reason)
    assert reasons == ["INVALID_CREDENTIALS"] * FAILURES_PER_ADDRESS + ["RATE_LIMITED"]
    # The right secret from the same address is refused too until the window moves on.
    limited = await issue(stack, "game-server", stack.game_secret)
    assert isinstance(limited, ServiceError)
    assert (limited.code, limited.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
