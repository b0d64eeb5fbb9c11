"""A service account's access token, fetched with client credentials and renewed before expiry.

Used by the edge for what it asks on its own behalf (its upstream WatchTop10, reads for anonymous
visitors) and by game servers.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc

from common.config import ClientCredentials
from common.errors import from_rpc_error
from common.grpc_client import call_metadata
from scoreboard.auth.v1 import auth_service_pb2

if TYPE_CHECKING:
    from scoreboard.auth.v1.auth_service_pb2_grpc import AuthServiceAsyncStub


class ServiceTokenSource:
    def __init__(
        self,
        auth: AuthServiceAsyncStub,
        credentials: ClientCredentials,
        *,
        scopes: tuple[str, ...] = (),
        renew_fraction: float = 0.7,
    ) -> None:
        self._auth = auth
        self._credentials = credentials
        self._scopes = scopes
        self._renew_fraction = renew_fraction
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                await self._fetch()
        assert self._token is not None
        return self._token

    def invalidate(self) -> None:
        self._renew_at = 0.0

    async def _fetch(self) -> None:
        try:
            reply = await self._auth.IssueServiceToken(
                auth_service_pb2.IssueServiceTokenRequest(
                    client_id=self._credentials.client_id,
                    client_secret=self._credentials.client_secret,
                    scopes=list(self._scopes),
                ),
                metadata=call_metadata(None),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        self._token = reply.access_token
        self._renew_at = time.monotonic() + max(1.0, reply.expires_in * self._renew_fraction)
