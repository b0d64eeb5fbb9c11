"""The JWKS cache against a real HTTP key server: an unknown kid refetches at most once per
interval, old keys are refetched after their maximum age, and a broken or hostile key set
changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from common.auth.jwks import JwksCache
from common.config import VerifierSettings
from common.errors import ServiceError
from tests.support.forge import Signer
from tests.support.idp import IdentityProvider, running_idp


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider("https://idp.test", "scoreboard", [Signer.ed25519()])
    async with running_idp(provider) as running:
        yield running


def _cache(idp: IdentityProvider, clock: FakeClock) -> JwksCache:
    settings = VerifierSettings(
        issuer=idp.issuer,
        audience=idp.audience,
        jwks_url=idp.jwks_url,
        jwks_refresh_seconds=60,
        jwks_max_age_seconds=600,
    )
    return JwksCache(settings, clock=clock)


async def _unknown(cache: JwksCache, kid: str) -> bool:
    with pytest.raises(ServiceError) as refused:
        await cache.key(kid)
    return refused.value.reason == "TOKEN_INVALID"


async def test_unknown_kids_refetch_at_most_once_per_interval(idp: IdentityProvider) -> None:
    clock = FakeClock()
    cache = _cache(idp, clock)
    await cache.load()
    assert idp.hits["/jwks.json"] == 1
    for n in range(200):
        assert await _unknown(cache, f"forged-{n}")
    clock.now += 30
    for n in range(50):
        assert await _unknown(cache, f"forged-late-{n}")
    assert idp.hits["/jwks.json"] == 1  # fetched at load, less than an interval ago
    clock.now += 31
    for n in range(100):
        assert await _unknown(cache, f"forged-next-{n}")
    assert idp.hits["/jwks.json"] == 2  # one refetch for the whole next interval

    # A genuinely new key (rotation at the issuer) is found once the interval has passed.
    rotated = Signer.ed25519()
    idp.signers.append(rotated)
    assert await _unknown(cache, rotated.kid)
    clock.now += 60
    assert (await cache.key(rotated.kid)).key_id == rotated.kid
    assert idp.hits["/jwks.json"] == 3
    # Known kids never fetch.
    for _ in range(100):
        await cache.key(idp.signers[0].kid)
    assert idp.hits["/jwks.json"] == 3


async def test_keys_are_refetched_after_their_maximum_age(idp: IdentityProvider) -> None:
    clock = FakeClock()
    cache = _cache(idp, clock)
    await cache.load()
    first = idp.signers[0]
    idp.signers[:] = [Signer.ed25519()]  # the issuer dropped the first key
    clock.now += 599
    assert (await cache.key(first.kid)).key_id == first.kid
    clock.now += 1
    assert await _unknown(cache, first.kid)
    assert idp.hits["/jwks.json"] == 2


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b'{"keys": "nope"}',
        b"\xff\xfe",
    ],
)
async def test_a_broken_key_set_keeps_the_known_keys(
    idp: IdentityProvider, document: bytes
) -> None:
    clock = FakeClock()
    cache = _cache(idp, clock)
    await cache.load()
    known = idp.signers[0].kid
    idp.jwks_override = document
    clock.now += 61
    assert await _unknown(cache, "forged")
    assert idp.hits["/jwks.json"] == 2
    assert (await cache.key(known)).key_id == known


async def test_hostile_entries_are_ignored(idp: IdentityProvider) -> None:
    good = idp.signers[0]
    private_jwk = dict(good.jwk(), kid="leaky", d="AAAA")
    symmetric = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"}
    ec = {
        "kty": "EC",
        "crv": "P-256",
        "kid": "not-allowed-alg",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    }
    encryption = dict(good.jwk(), kid="enc", use="enc")
    idp.jwks_override = json.dumps(
        {"keys": [good.jwk(), private_jwk, symmetric, ec, encryption, "junk", {"kid": 5}]}
    ).encode()
    cache = _cache(idp, FakeClock())
    await cache.load()
    assert cache.known_kids() == [good.kid]
    assert [k["kid"] for k in cache.document()["keys"]] == [good.kid]
