"""An external issuer (a Keycloak stand-in over HTTP: its own RSA key pair, issuer, audience, a
client-credentials token endpoint) replaces auth_service: the edge and the gRPC services verify
its tokens from its JWKS URL with the denylist off, the edge gets its own service token from
its token endpoint, and auth_service is stopped."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from common.config import ClientCredentials, VerifierSettings
from common.errors import from_rpc_error
from scoreboard.score.v1 import score_service_pb2 as score_pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.conftest import StackFactory
from tests.support.clients import metadata
from tests.support.forge import Signer, claims
from tests.support.idp import IdentityProvider, running_idp
from tests.support.servers import wait_for
from tests.support.stack import Stack

ISSUER = "http://idp.test/realms/scoreboard"
AUDIENCE = "scoreboard-api"


@pytest.fixture(scope="module")
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider(ISSUER, AUDIENCE, [Signer.rsa()])
    provider.clients["scoreboard-edge"] = (
        secrets.token_urlsafe(24),
        "leaderboard:read stream:watch",
    )
    async with running_idp(provider) as running:
        yield running


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory, idp: IdentityProvider) -> AsyncIterator[Stack]:
    verifier = VerifierSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=idp.jwks_url,
        denylist=False,
        token_types=("at+jwt", "JWT"),
        jwks_refresh_seconds=60,
    )
    secret = idp.clients["scoreboard-edge"][0]
    async with stack_factory(
        score={"verifier": verifier},
        leaderboard={"verifier": verifier},
        stream={"verifier": verifier},
        edge={
            "verifier": verifier,
            "credentials": ClientCredentials("scoreboard-edge", secret, token_url=idp.token_url),
        },
    ) as running:
        await running.stop_service("auth")
        yield running


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=15) as client:
        yield client


async def _provision(stack: Stack, subject: str, name: str) -> None:
    """Accounts of an external issuer are provisioned into the users table (scores and the
    ranking reference it); here by hand, as a provisioning job would."""
    async with stack.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO users (id, username, display_name, password_hash)"
            " VALUES (%s, %s, %s, '!external')",
            (subject, f"kc-{subject[:8]}", name),
        )


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_user_tokens_of_the_external_issuer_work_end_to_end(
    stack: Stack, idp: IdentityProvider, http: httpx.AsyncClient
) -> None:
    subject = str(uuid.uuid4())
    await _provision(stack, subject, "Keycloak Kim")
    token = idp.user_token(subject)
    done = await http.post(
        "/api/actions/complete", json={"actionId": "daily-login"}, headers=_bearer(token)
    )
    assert done.status_code == 200, done.text
    assert done.json()["data"]["newScore"] == 10

    async def ranked() -> httpx.Response | None:
        # The ranking follows the ledger through the outbox and the stream: eventually.
        reply = await http.get(f"/api/leaderboard/user/{subject}", headers=_bearer(token))
        assert reply.status_code in (200, 404), reply.text
        return reply if reply.status_code == 200 else None

    rank = await wait_for(ranked, timeout=15)
    assert rank is not None
    assert rank.json()["data"]["username"] == "Keycloak Kim"
    # Anonymous reads use the edge's own token, from the issuer's token endpoint.
    assert idp.hits["/token"] >= 1
    assert (await http.get("/api/leaderboard")).status_code == 200
    assert (await http.get("/healthz")).json()["liveStream"] is True


async def test_service_tokens_of_the_external_issuer_work_over_grpc(
    stack: Stack, idp: IdentityProvider
) -> None:
    subject = str(uuid.uuid4())
    await _provision(stack, subject, "Game Player")

    async def complete(token: str, user_id: str) -> str:
        async with grpc.aio.insecure_channel(stack.address("score")) as channel:
            try:
                reply = await score_service_pb2_grpc.ScoreServiceStub(channel).CompleteAction(
                    score_pb.CompleteActionRequest(
                        user_id=user_id,
                        action_id="share-replay",
                        idempotency_key=str(uuid.uuid4()),
                    ),
                    metadata=metadata(token),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:
                return from_rpc_error(exc).reason
        return f"OK:{reply.new_score}"

    game = idp.service_token("arena-9", "scores:write")
    assert await complete(game, subject) == "OK:5"
    reader = idp.service_token("stats", "leaderboard:read")
    assert await complete(reader, subject) == "PERMISSION_DENIED"
    other = idp.user_token(str(uuid.uuid4()))
    assert await complete(other, subject) == "PERMISSION_DENIED"


async def test_tokens_the_external_issuer_did_not_sign_are_refused(
    stack: Stack, idp: IdentityProvider, http: httpx.AsyncClient, ours: Signer
) -> None:
    cases = {
        "auth_service's own key": ours.sign(),
        "wrong audience": idp.user_token(aud="account"),
        "wrong issuer": idp.user_token(iss="http://idp.test/realms/other"),
        "refresh token": idp.signer.sign({**_payload(idp), "typ": "Refresh"}, typ="JWT"),
        "another key under the issuer's kid": Signer.rsa(idp.signer.kid).sign(
            _payload(idp), typ="JWT"
        ),
    }
    for name, token in cases.items():
        reply = await http.post("/api/ws-ticket", headers=_bearer(token))
        assert reply.status_code == 401, name
        assert reply.json()["code"] == "TOKEN_INVALID", name


def _payload(idp: IdentityProvider) -> dict[str, object]:
    return claims(iss=idp.issuer, aud=idp.audience)


async def test_denylist_is_off_and_unknown_kids_do_not_flood_the_issuer(
    stack: Stack, idp: IdentityProvider, http: httpx.AsyncClient
) -> None:
    # With the denylist on, a missing loaded marker only matters to a process whose revocation
    # mirror has not loaded the list yet (it waits, then 503); a loaded mirror answers from
    # memory. Off, no mirror runs and the marker does not matter at all.
    await stack.redis.delete(stack.keys.denylist_loaded)
    token = idp.user_token()
    assert (await http.post("/api/ws-ticket", headers=_bearer(token))).status_code == 200

    before = idp.hits["/jwks.json"]
    for _ in range(40):
        forged = Signer.rsa(f"kid-{secrets.token_hex(4)}").sign(_payload(idp), typ="JWT")
        reply = await http.post("/api/ws-ticket", headers=_bearer(forged))
        assert reply.status_code == 401
    assert idp.hits["/jwks.json"] - before <= 1

    served = (await http.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in served["keys"]] == [idp.signer.kid]
    assert set(served["keys"][0]) == {"kty", "n", "e", "kid", "alg", "use"}
