"""Signing-key rotation: the CLI publishes the new key first, auth_service picks it up without a
restart once it is due, tokens of the old key keep verifying during the overlap, and a key
dropped from the set stops verifying. Plus the issuer's activation logic on a fake clock."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt

from auth_service.issuer import TokenIssuer
from common.auth.signing_keys import previous_key_path, rotate_keys
from common.config import VerifierSettings
from common.errors import from_rpc_error
from scoreboard.score.v1 import score_service_pb2 as score_pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.clients import Api, metadata
from tests.support.servers import wait_for
from tests.support.stack import KeyFiles, Stack

PASSWORD = "correct horse battery"


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _published(keys: KeyFiles) -> list[str]:
    return [k["kid"] for k in json.loads(keys.jwks.read_text())["keys"]]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_issuer_switches_only_when_the_new_key_is_due(tmp_path: Path) -> None:
    keys = KeyFiles.create(tmp_path)
    first = _published(keys)[0]
    start = keys.private.stat().st_mtime + 1000
    clock = FakeClock(start)
    issuer = TokenIssuer(
        keys.private,
        issuer="scoreboard",
        audience="scoreboard",
        activation_seconds=90,
        clock=clock,
    )

    def kid_now() -> str:
        return _kid(issuer.access_token(subject="u", role="user", scopes=(), lifetime=60).token)

    assert kid_now() == first
    new = rotate_keys(keys.private, keys.jwks)
    os.utime(keys.private, (start, start))
    assert _published(keys) == [first, new]
    assert previous_key_path(keys.private).exists()
    clock.now = start + 2  # past the once-a-second file check
    assert kid_now() == first  # published, not yet due
    clock.now = start + 89
    assert kid_now() == first
    clock.now = start + 90
    assert kid_now() == new

    # A restart during the activation period keeps signing with the previous key (from the
    # .previous file), then switches.
    newer = rotate_keys(keys.private, keys.jwks)
    os.utime(keys.private, (start + 100, start + 100))
    clock.now = start + 110
    restarted = TokenIssuer(
        keys.private,
        issuer="scoreboard",
        audience="scoreboard",
        activation_seconds=90,
        clock=clock,
    )
    token = restarted.access_token(subject="u", role="user", scopes=(), lifetime=60).token
    assert _kid(token) == new
    clock.now = start + 191
    token = restarted.access_token(subject="u", role="user", scopes=(), lifetime=60).token
    assert _kid(token) == newer
    assert _published(keys) == [new, newer]


async def _rotate_with_cli(keys: KeyFiles) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        "keys",
        "rotate",
        "--private-key",
        str(keys.private),
        "--jwks",
        str(keys.jwks),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().split("signing key id: ", 1)[1].split()[0]


async def _grpc_status(stack: Stack, token: str) -> str:
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        try:
            await score_service_pb2_grpc.ScoreServiceStub(channel).ListActions(
                score_pb.ListActionsRequest(), metadata=metadata(token), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            return from_rpc_error(exc).reason
    return "OK"


async def test_rotation_with_overlap_through_the_stack(
    stack_factory: StackFactory, tmp_path: Path
) -> None:
    keys = KeyFiles.create(tmp_path)
    verifier = VerifierSettings(
        issuer="scoreboard", audience="scoreboard", jwks_file=keys.jwks, jwks_refresh_seconds=1.0
    )
    async with stack_factory(
        keys=keys,
        auth={"key_activation_seconds": 1.5},
        edge={"verifier": verifier},
    ) as stack:
        api = Api(stack.edge_url)
        try:
            await _rotation(stack, api, keys)
        finally:
            await api.close()


async def _rotation(stack: Stack, api: Api, keys: KeyFiles) -> None:
    player = await api.register()
    first = _kid(player.access_token)
    assert _published(keys) == [first]

    async def login() -> str:
        reply = await api.http.post(
            "/api/auth/login", json={"username": player.username, "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["data"]["accessToken"]
        return token

    async def me(token: str) -> httpx.Response:
        return await api.http.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})

    second = await _rotate_with_cli(keys)
    assert _published(keys) == [first, second]

    async def signed_with(kid: str) -> str:
        token = await login()
        return token if _kid(token) == kid else ""

    # No restart: auth_service picks the new key up once it is due.
    fresh = await wait_for(lambda: signed_with(second), timeout=30, interval=0.3)
    for token in (fresh, player.access_token):  # the overlap: both keys verify
        assert (await me(token)).status_code == 200
        assert await _grpc_status(stack, token) == "OK"
    served: dict[str, Any] = (await api.http.get("/.well-known/jwks.json")).json()
    assert sorted(k["kid"] for k in served["keys"]) == sorted([first, second])
    assert all("d" not in k for k in served["keys"])

    third = await _rotate_with_cli(keys)
    assert _published(keys) == [second, third]
    newest = await wait_for(lambda: signed_with(third), timeout=30, interval=0.3)
    assert (await me(newest)).status_code == 200
    assert (await me(fresh)).status_code == 200
    assert await _grpc_status(stack, newest) == "OK"
    # The first key left the set: its tokens stop verifying (even ones verified before).
    refused = await me(player.access_token)
    assert (refused.status_code, refused.json()["code"]) == (401, "TOKEN_INVALID")
    assert await _grpc_status(stack, player.access_token) == "TOKEN_INVALID"
