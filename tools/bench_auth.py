"""Benchmark of the hot paths of authentication (not a test): token verification with the
denylist check, and the rate limiter script. Bounded; talks only to the Redis it is given and
removes its keys afterwards.

Usage: python tools/bench_auth.py [--redis redis://127.0.0.1:6379/0] [--n 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
import uuid
from pathlib import Path

import jwt
import redis.asyncio as aioredis

from common.auth.denylist import Denylist
from common.auth.jwks import JwksCache
from common.auth.revocation_mirror import RevocationMirror
from common.auth.signing_keys import SigningKey, ensure_keys
from common.auth.tokens import TokenVerifier
from common.config import VerifierSettings
from common.ratelimit import SlidingWindowLimiter
from common.redis_keys import Keys


def _token(key: SigningKey) -> str:
    now = int(time.time())
    claims = {
        "iss": "scoreboard",
        "aud": "scoreboard",
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 900,
        "jti": str(uuid.uuid4()),
        "role": "user",
        "sid": str(uuid.uuid4()),
    }
    return jwt.encode(
        claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"}
    )


def _report(name: str, count: int, seconds: float) -> None:
    print(f"{name:<46} {count / seconds:>9,.0f}/s  {seconds / count * 1e6:>8.1f} µs each")


async def main(redis_url: str, n: int) -> None:
    prefix = f"bench-{secrets.token_hex(4)}:"
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            private, jwks = Path(tmp) / "k.pem", Path(tmp) / "jwks.json"
            ensure_keys(private, jwks)
            key = SigningKey.load(private)
            settings = VerifierSettings("scoreboard", "scoreboard", jwks_file=jwks)
            cache = JwksCache(settings)
            await cache.load()
            await Denylist(redis, keys).reload([], [])
            mirror = RevocationMirror(redis, keys)
            mirror.start()
            verifier = TokenVerifier(settings, cache, mirror)
            no_denylist = TokenVerifier(
                VerifierSettings("scoreboard", "scoreboard", jwks_file=jwks, denylist=False),
                cache,
                None,
            )
            tokens = [_token(key) for _ in range(n)]
            start = time.perf_counter()
            for token in tokens:
                await no_denylist.verify(token)
            _report("verify, new token, no denylist (signature)", n, time.perf_counter() - start)
            start = time.perf_counter()
            for token in tokens:
                await no_denylist.verify(token)
            _report("verify, seen token, no denylist (cache)", n, time.perf_counter() - start)
            fresh = [_token(key) for _ in range(n)]
            start = time.perf_counter()
            for token in fresh:
                await verifier.verify(token)
            _report("verify, new token + revocation mirror", n, time.perf_counter() - start)
            start = time.perf_counter()
            for token in fresh:
                await verifier.verify(token)
            _report("verify, seen token + revocation mirror", n, time.perf_counter() - start)
            await verifier.aclose()

        limiter = SlidingWindowLimiter(redis, keys)
        start = time.perf_counter()
        for i in range(n):
            await limiter.hit("bench", f"user-{i % 1000}", limit=100, window_seconds=60)
        _report("rate limit hit, sequential", n, time.perf_counter() - start)

        async def worker(w: int) -> None:
            for i in range(n // 20):
                await limiter.hit("bench2", f"user-{w}-{i % 50}", limit=100, window_seconds=60)

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(20)))
        _report("rate limit hit, 20 concurrent", n // 20 * 20, time.perf_counter() - start)
    finally:
        async for found in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(found)
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.redis, args.n))
