"""Clients for tests: the REST API through the edge, WebSocket viewers, gRPC with tokens."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import orjson
import websockets

from common.auth.service_token import ServiceTokenSource
from common.config import ClientCredentials
from common.grpc_client import call_metadata
from scoreboard.auth.v1 import auth_service_pb2_grpc

if TYPE_CHECKING:
    from scoreboard.admin.v1.admin_service_pb2_grpc import AdminServiceAsyncStub
    from tests.support.stack import Stack


@dataclass
class Player:
    user_id: str
    username: str
    display_name: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


class Api:
    """The edge's REST API."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=15)

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def register(
        self, name: str | None = None, password: str = "correct horse battery"
    ) -> Player:
        username = name or f"p{secrets.token_hex(5)}"
        reply = await self.http.post(
            "/api/auth/register",
            json={"username": username, "password": password, "displayName": username.title()},
        )
        assert reply.status_code == 201, reply.text
        data = reply.json()["data"]
        return Player(
            data["user"]["userId"],
            username,
            data["user"]["displayName"],
            data["accessToken"],
            data["refreshToken"],
        )

    async def complete(self, player: Player, action_id: str, **extra: Any) -> httpx.Response:
        headers = dict(player.auth)
        key = extra.pop("idempotency_key", None)
        if key:
            headers["Idempotency-Key"] = key
        return await self.http.post(
            "/api/actions/complete", json={"actionId": action_id, **extra}, headers=headers
        )


class Viewer:
    """A WebSocket viewer that records every message."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Viewer:
        return cls(await websockets.connect(url, **kwargs))

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                self.messages.append(orjson.loads(raw))
                self._new.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self._new.set()

    def updates(self) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m["type"] == "LEADERBOARD_UPDATE"]

    async def wait(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The first message matching `predicate`, waiting for it if needed."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self._task.done():
                raise AssertionError(f"no matching message; got {self.messages[-3:]}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    async def close(self) -> None:
        await self.connection.close()
        await self._task


async def service_token(auth_address: str, client_id: str, secret: str) -> str:
    channel = grpc.aio.insecure_channel(auth_address)
    try:
        source = ServiceTokenSource(
            auth_service_pb2_grpc.AuthServiceStub(channel), ClientCredentials(client_id, secret)
        )
        return await source.token()
    finally:
        await channel.close()


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return call_metadata(token)


@asynccontextmanager
async def admin_stub(stack: Stack) -> AsyncIterator[AdminServiceAsyncStub]:
    """The stack's AdminService (served by score_service) over a channel of its own."""
    from scoreboard.admin.v1 import admin_service_pb2_grpc

    channel = grpc.aio.insecure_channel(stack.address("score"))
    try:
        yield admin_service_pb2_grpc.AdminServiceStub(channel)
    finally:
        await channel.close()
