"""Builds the token verifier a process uses, from its settings."""

from __future__ import annotations

import redis.asyncio as aioredis

from common.auth.jwks import JwksCache
from common.auth.revocation_mirror import RevocationMirror
from common.auth.tokens import TokenVerifier
from common.config import VerifierSettings
from common.redis_keys import Keys


async def open_verifier(
    settings: VerifierSettings, redis: aioredis.Redis, keys: Keys
) -> TokenVerifier:
    """A verifier whose revocation mirror is already following Redis (not waited for: until
    its first load, checks wait briefly, then fail closed). Close it with `aclose()` before
    closing `redis`."""
    jwks = JwksCache(settings)
    await jwks.load()
    mirror = RevocationMirror(redis, keys) if settings.denylist else None
    if mirror is not None:
        mirror.start()
    return TokenVerifier(settings, jwks, mirror)
