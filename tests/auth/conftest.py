"""Fixtures of the auth tests: our own signing key (as the test reads it from the key files)
and an attacker's identity provider serving the attacker's keys over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.auth.forge import Signer
from tests.auth.idp import IdentityProvider, running_idp
from tests.support.stack import KeyFiles


@pytest.fixture(scope="session")
def ours(key_files: KeyFiles) -> Signer:
    """The stack's real signing key, so a test can sign exactly what auth_service would."""
    kid = json.loads(key_files.jwks.read_text())["keys"][0]["kid"]
    return Signer.from_file(key_files.private, kid)


@pytest.fixture(scope="session")
async def attacker() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider("https://attacker.invalid", "scoreboard", [Signer.ed25519()])
    async with running_idp(provider) as running:
        yield running
