"""Builds the token verifier a process uses, from its settings."""

from __future__ import annotations

import redis.asyncio as aioredis

from common.auth.denylist import Denylist
from common.auth.jwks import JwksCache
from common.auth.tokens import TokenVerifier
from common.config import VerifierSettings
from common.redis_keys import Keys


async def open_verifier(
    settings: VerifierSettings, redis: aioredis.Redis, keys: Keys
) -> TokenVerifier:
    jwks = JwksCache(settings)
    await jwks.load()
    denylist = Denylist(redis, keys) if settings.denylist else None
    return TokenVerifier(settings, jwks, denylist)
