"""Forged and malformed access tokens are refused, by the edge and by gRPC services called
directly (the same verifier), while a correctly signed token passes (so each refusal is about
the forgery, not the test's token)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest

from common.errors import ServiceError, from_rpc_error
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lb_pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2 as score_pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.support.clients import Api, metadata
from tests.support.forge import Signer, b64, claims, hmac_with, raw_eddsa, tampered, unsigned
from tests.support.idp import IdentityProvider
from tests.support.stack import Stack


@dataclass
class Keys:
    ours: Signer
    attacker: IdentityProvider
    refresh_token: str

    @property
    def evil(self) -> Signer:
        return self.attacker.signer


def _now() -> int:
    return int(time.time())


Forgery = Callable[[Keys], str]


def _without(claim: str) -> Forgery:
    return lambda k: k.ours.sign(claims(**{claim: None}))


INVALID, EXPIRED, UNAUTH = "TOKEN_INVALID", "TOKEN_EXPIRED", "UNAUTHENTICATED"

FORGERIES: dict[str, tuple[Forgery, str]] = {
    "alg-none": (lambda k: unsigned(claims(), k.ours.kid), INVALID),
    "alg-none-no-signature-dot": (lambda k: unsigned(claims(), k.ours.kid)[:-1], INVALID),
    "hs256-keyed-with-public-pem": (
        lambda k: hmac_with(k.ours.public_pem(), claims(), k.ours.kid),
        INVALID,
    ),
    "hs256-keyed-with-public-jwk": (
        lambda k: hmac_with(k.ours.jwk()["x"].encode(), claims(), k.ours.kid),
        INVALID,
    ),
    "expired": (
        lambda k: k.ours.sign(claims(iat=_now() - 3600, nbf=_now() - 3600, exp=_now() - 600)),
        EXPIRED,
    ),
    "not-yet-valid": (lambda k: k.ours.sign(claims(nbf=_now() + 600)), INVALID),
    "issued-in-the-future": (lambda k: k.ours.sign(claims(iat=_now() + 600, nbf=None)), INVALID),
    "wrong-audience": (lambda k: k.ours.sign(claims(aud="another-api")), INVALID),
    "audience-list-without-ours": (lambda k: k.ours.sign(claims(aud=["a", "b"])), INVALID),
    "audience-prefix": (lambda k: k.ours.sign(claims(aud="scoreboard-admin")), INVALID),
    "wrong-issuer": (lambda k: k.ours.sign(claims(iss="https://evil.invalid")), INVALID),
    "issuer-prefix": (lambda k: k.ours.sign(claims(iss="scoreboardx")), INVALID),
    "unknown-kid": (lambda k: k.evil.sign(claims(), kid="no-such-key"), INVALID),
    "kid-path-traversal": (
        lambda k: k.evil.sign(claims(), kid="../../../../../../etc/passwd"),
        INVALID,
    ),
    "kid-sql-injection": (lambda k: k.evil.sign(claims(), kid="' OR '1'='1' --"), INVALID),
    "kid-huge": (lambda k: k.evil.sign(claims(), kid="k" * 4_000), INVALID),
    "kid-just-over-limit": (lambda k: k.evil.sign(claims(), kid="k" * 257), INVALID),
    "kid-not-a-string": (
        lambda k: raw_eddsa(k.ours, {"typ": "at+jwt", "kid": [k.ours.kid]}, claims()),
        INVALID,
    ),
    "header-not-an-object": (
        lambda k: f"{b64(b'[1]')}.{k.ours.sign(claims()).split('.', 1)[1]}",
        INVALID,
    ),
    "kid-missing": (lambda k: k.ours.sign(claims(), kid=None), INVALID),
    "jku-to-attacker-keys": (
        lambda k: k.evil.sign(claims(), jku=k.attacker.jwks_url),
        INVALID,
    ),
    "x5u-to-attacker-keys": (
        lambda k: k.evil.sign(claims(), x5u=f"{k.attacker.url}/cert.pem"),
        INVALID,
    ),
    "embedded-jwk-with-attacker-kid": (
        lambda k: k.evil.sign(claims(), jwk=k.evil.jwk()),
        INVALID,
    ),
    "embedded-jwk-under-our-kid": (
        lambda k: k.evil.sign(claims(), kid=k.ours.kid, jwk=k.evil.jwk()),
        INVALID,
    ),
    "jku-with-our-kid": (
        lambda k: k.evil.sign(claims(), kid=k.ours.kid, jku=k.attacker.jwks_url),
        INVALID,
    ),
    "rs256-under-our-eddsa-kid": (
        lambda k: Signer.rsa(k.ours.kid).sign(claims()),
        INVALID,
    ),
    "refresh-token-as-access-token": (lambda k: k.refresh_token, INVALID),
    "refresh-typ-claim": (lambda k: k.ours.sign(claims(typ="Refresh")), INVALID),
    "id-token-typ-claim": (lambda k: k.ours.sign(claims(typ="ID")), INVALID),
    "typ-header-jwt": (lambda k: k.ours.sign(claims(), typ="JWT"), INVALID),
    "typ-header-missing": (lambda k: k.ours.sign(claims(), typ=None), INVALID),
    **{
        f"missing-{name}": (_without(name), INVALID)
        for name in ("exp", "iat", "sub", "iss", "aud", "jti")
    },
    "tampered-role-admin": (lambda k: tampered(k.ours.sign(claims()), role="admin"), INVALID),
    "tampered-subject": (
        lambda k: tampered(k.ours.sign(claims()), sub=str(uuid.uuid4())),
        INVALID,
    ),
    "signature-stripped": (lambda k: k.ours.sign(claims()).rsplit(".", 1)[0] + ".", INVALID),
    "critical-header": (lambda k: k.ours.sign(claims(), crit=["exp"]), INVALID),
    "unknown-role": (lambda k: k.ours.sign(claims(role="superuser")), INVALID),
    "service-role-without-client": (lambda k: k.ours.sign(claims(role="service")), INVALID),
    "user-role-with-service-subject": (
        lambda k: k.ours.sign(claims(sub="svc:game-server")),
        INVALID,
    ),
    "scope-not-a-string": (lambda k: k.ours.sign(claims(scope={"a": 1})), INVALID),
    "not-a-jwt": (lambda k: "not-a-jwt", INVALID),
    "three-garbage-segments": (lambda k: "abc.def.ghi", INVALID),
    "oversized": (lambda k: k.ours.sign(claims(pad="x" * 9000)), INVALID),
}


@pytest.fixture(scope="module")
async def keys(shared_stack: Stack, ours: Signer, attacker: IdentityProvider) -> Keys:
    api = Api(shared_stack.edge_url)
    try:
        player = await api.register()
    finally:
        await api.close()
    return Keys(ours, attacker, player.refresh_token)


@pytest.fixture(scope="module")
async def channels(shared_stack: Stack) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    opened = {
        name: grpc.aio.insecure_channel(shared_stack.address(name))
        for name in ("score", "leaderboard")
    }
    try:
        yield opened
    finally:
        for channel in opened.values():
            await channel.close()


async def _grpc_error(channels: dict[str, grpc.aio.Channel], token: str) -> list[ServiceError]:
    """Call a read on each service directly; the errors (none when both accepted the token)."""
    errors: list[ServiceError] = []
    calls = (
        lambda: score_service_pb2_grpc.ScoreServiceStub(channels["score"]).ListActions(
            score_pb.ListActionsRequest(), metadata=metadata(token), timeout=10
        ),
        lambda: leaderboard_service_pb2_grpc.LeaderboardServiceStub(
            channels["leaderboard"]
        ).ListEntries(lb_pb.ListEntriesRequest(page_size=1), metadata=metadata(token), timeout=10),
    )
    for call in calls:
        try:
            await call()
        except grpc.aio.AioRpcError as exc:
            errors.append(from_rpc_error(exc))
    return errors


async def test_a_correctly_signed_token_passes(
    shared_stack: Stack, api: Api, keys: Keys, channels: dict[str, grpc.aio.Channel]
) -> None:
    token = keys.ours.sign(claims())
    reply = await api.http.post("/api/ws-ticket", headers={"authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    assert await _grpc_error(channels, token) == []


@pytest.mark.parametrize("name", sorted(FORGERIES))
async def test_forged_token_is_refused_by_the_edge(
    name: str, shared_stack: Stack, api: Api, keys: Keys
) -> None:
    build, reason = FORGERIES[name]
    reply = await api.http.post(
        "/api/ws-ticket", headers={"authorization": f"Bearer {build(keys)}"}
    )
    assert reply.status_code == 401, reply.text
    assert reply.json() == {"success": False, "error": reply.json()["error"], "code": reason}
    assert reply.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("name", sorted(FORGERIES))
async def test_forged_token_is_refused_by_grpc_services(
    name: str, keys: Keys, channels: dict[str, grpc.aio.Channel]
) -> None:
    build, reason = FORGERIES[name]
    errors = await _grpc_error(channels, build(keys))
    expected = (grpc.StatusCode.UNAUTHENTICATED, reason)
    if name == "oversized":
        # Metadata past gRPC's soft 8 KiB limit may be refused by gRPC itself (at random up to
        # the hard limit), before any interceptor runs; otherwise the verifier refuses it.
        exhausted = (grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED")
        assert len(errors) == 2
        assert all((e.code, e.reason) in (expected, exhausted) for e in errors)
        return
    assert [(e.code, e.reason) for e in errors] == [expected] * 2


async def test_jku_and_x5u_are_never_fetched(
    api: Api, keys: Keys, channels: dict[str, grpc.aio.Channel]
) -> None:
    before = sum(keys.attacker.hits.values())
    for name in ("jku-to-attacker-keys", "x5u-to-attacker-keys", "jku-with-our-kid"):
        token = FORGERIES[name][0](keys)
        await api.http.post("/api/ws-ticket", headers={"authorization": f"Bearer {token}"})
        await _grpc_error(channels, token)
    assert sum(keys.attacker.hits.values()) == before


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Basic dXNlcjpwYXNz", "the authorization must be a bearer token"),
        ("Bearer", "the authorization must be a bearer token"),
        ("Token abc.def.ghi", "the authorization must be a bearer token"),
    ],
)
async def test_malformed_authorization_header(api: Api, header: str, message: str) -> None:
    reply = await api.http.post("/api/ws-ticket", headers={"authorization": header})
    assert reply.status_code == 401
    assert reply.json() == {"success": False, "error": message, "code": UNAUTH}


async def test_grpc_without_any_token_is_refused(channels: dict[str, grpc.aio.Channel]) -> None:
    stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channels["leaderboard"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListEntries(lb_pb.ListEntriesRequest(page_size=1), timeout=10)
    error = from_rpc_error(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, UNAUTH)
