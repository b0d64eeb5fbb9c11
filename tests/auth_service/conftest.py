"""Fixtures of the auth tests: an attacker's identity provider serving the attacker's keys over
HTTP (the stack's own signing key, `ours`, is a root fixture: the edge tests sign with it too)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.forge import Signer
from tests.support.idp import IdentityProvider, running_idp


@pytest.fixture(scope="session")
async def attacker() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider("https://attacker.invalid", "scoreboard", [Signer.ed25519()])
    async with running_idp(provider) as running:
        yield running
