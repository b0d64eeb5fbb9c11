"""A service account's access token, fetched with client credentials and renewed before expiry.

Used by the edge for what it asks on its own behalf (its upstream WatchTop10, reads for anonymous
visitors) and by game servers. The token comes from auth_service (IssueServiceToken), or, when
the credentials name a token URL, from an external issuer's OAuth 2.0 token endpoint (RFC 6749
4.4, client_secret_basic), e.g. Keycloak's .../protocol/openid-connect/token.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc
import httpx

from common.config import ClientCredentials
from common.errors import Reason, from_rpc_error, unauthenticated, unavailable
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
        if self._credentials.token_url:
            await self._fetch_oauth(self._credentials.token_url)
            return
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

    async def _fetch_oauth(self, url: str) -> None:
        form = {"grant_type": "client_credentials"}
        if self._scopes:
            form["scope"] = " ".join(self._scopes)
        try:
            async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
                response = await client.post(
                    url,
                    data=form,
                    auth=(self._credentials.client_id, self._credentials.client_secret),
                )
        except httpx.HTTPError as exc:
            raise unavailable(f"no answer from the token endpoint ({type(exc).__name__})") from None
        if response.status_code in (400, 401, 403):
            raise unauthenticated(
                Reason.INVALID_CREDENTIALS, "the token endpoint refused the client credentials"
            )
        try:
            body = response.json()
            token, expires_in = body["access_token"], float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise unavailable(f"the token endpoint answered {response.status_code}") from None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            raise unavailable(f"the token endpoint answered {response.status_code}")
        self._token = token
        self._renew_at = time.monotonic() + max(1.0, expires_in * self._renew_fraction)
