"""A stand-in external identity provider on a real HTTP server (uvicorn on a free port): a JWKS
endpoint and an OAuth 2.0 client-credentials token endpoint, like Keycloak's, plus a count of
every request it got (to prove what verifiers fetch, and what they never fetch)."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.forge import Signer, claims


@dataclass
class IdentityProvider:
    issuer: str
    audience: str
    signers: list[Signer]
    # client id -> (secret, scopes)
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    url: str = ""
    # Served instead of the JWKS when set (a broken or hostile key set).
    jwks_override: bytes | None = None

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def signer(self) -> Signer:
        return self.signers[-1]

    def user_token(self, subject: str | None = None, **overrides: Any) -> str:
        payload = claims(**{"iss": self.issuer, "aud": self.audience, **overrides})
        if subject is not None:
            payload["sub"] = subject
        # Keycloak's access tokens say typ "JWT" in the header and "Bearer" in the claims.
        payload.setdefault("typ", "Bearer")
        return self.signer.sign(payload, typ="JWT")

    def service_token(self, client_id: str, scopes: str, lifetime: int = 300) -> str:
        now = int(time.time())
        payload = claims(
            iss=self.issuer,
            aud=self.audience,
            sub=str(uuid.uuid4()),
            azp=client_id,
            role="service",
            scope=scopes,
            typ="Bearer",
            iat=now,
            nbf=None,
            exp=now + lifetime,
        )
        return self.signer.sign(payload, typ="JWT")

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.hits["/jwks.json"] += 1
            if self.jwks_override is not None:
                return Response(self.jwks_override, media_type="application/json")
            return JSONResponse({"keys": [s.jwk() for s in self.signers]})

        async def token(request: Request) -> Response:
            self.hits["/token"] += 1
            scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
            client_id, _, secret = base64.b64decode(encoded or "").decode().partition(":")
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            known = self.clients.get(client_id)
            if scheme.lower() != "basic" or known is None or known[0] != secret:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if form.get("grant_type") != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            asked = str(form.get("scope") or known[1]).split()
            if set(asked) - set(known[1].split()):
                return JSONResponse({"error": "invalid_scope"}, status_code=400)
            return JSONResponse(
                {
                    "access_token": self.service_token(client_id, " ".join(asked)),
                    "expires_in": 300,
                    "token_type": "Bearer",
                }
            )

        async def other(request: Request) -> Response:
            self.hits[request.url.path] += 1
            return JSONResponse({"keys": [s.jwk() for s in self.signers]})

        return Starlette(
            routes=[
                Route("/jwks.json", jwks),
                Route("/token", token, methods=["POST"]),
                Route("/{path:path}", other),
            ]
        )


@asynccontextmanager
async def running_idp(provider: IdentityProvider) -> AsyncIterator[IdentityProvider]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(provider.app(), log_config=None, access_log=False, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    provider.url = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        server.should_exit = True
        await task
