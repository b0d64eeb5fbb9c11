"""What auth_service issues: the access token's header and claims, its configurable lifetime
(15 minutes by default, the specification's 24 hours one setting away), and opaque refresh
tokens."""

from __future__ import annotations

import json
from typing import Any

import jwt

from tests.conftest import StackFactory
from tests.support.clients import Api
from tests.support.stack import Stack


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


async def test_access_token_header_and_claims(shared_stack: Stack, api: Api) -> None:
    player = await api.register()
    header, claims = _parts(player.access_token)
    published = json.loads(shared_stack.config.keys.jwks.read_text())["keys"]
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": published[-1]["kid"]}
    assert set(claims) == {
        "iss", "aud", "sub", "iat", "nbf", "exp", "jti", "role", "scope", "name", "sid"
    }  # fmt: skip
    assert (claims["iss"], claims["aud"], claims["sub"]) == (
        "scoreboard",
        "scoreboard",
        player.user_id,
    )
    assert claims["role"] == "user" and claims["scope"] == ""
    assert claims["exp"] - claims["iat"] == 900
    assert claims["name"] == player.display_name
    # The refresh token is opaque: no structure, nothing to decode.
    assert "." not in player.refresh_token and len(player.refresh_token) >= 43
    again = await api.register()
    assert _parts(again.access_token)[1]["jti"] != claims["jti"]
    assert _parts(again.access_token)[1]["sid"] != claims["sid"]


async def test_lifetime_is_a_setting(stack_factory: StackFactory) -> None:
    async with stack_factory(auth={"access_token_seconds": 86_400}) as stack:
        api = Api(stack.edge_url)
        try:
            reply = await api.http.post(
                "/api/auth/register",
                json={"username": "day-long", "password": "correct horse battery"},
            )
        finally:
            await api.close()
    data = reply.json()["data"]
    assert data["expiresIn"] == 86_400
    _, claims = _parts(data["accessToken"])
    assert claims["exp"] - claims["iat"] == 86_400
