"""Builds the token verifier a process uses, from its settings."""

from __future__ import annotations

import redis.asyncio as aioredis

from common.config import VerifierSettings
from common.denylist import Denylist
from common.jwks import JwksCache
from common.keys import Keys
from common.tokens import TokenVerifier


async def open_verifier(
    settings: VerifierSettings, redis: aioredis.Redis, keys: Keys
) -> TokenVerifier:
    jwks = JwksCache(settings)
    await jwks.load()
    denylist = Denylist(redis, keys) if settings.denylist else None
    return TokenVerifier(settings, jwks, denylist)
