"""Public keys for token verification: a JWKS file or URL, cached in memory.

A kid is only a lookup into these keys: jku, x5u, x5c and embedded jwk headers are never
followed. An unknown kid refetches the set at most once per refresh interval, so a flood of
forged kids cannot turn into a flood of fetches. Keys are also refetched when the cached set is
older than its maximum age, so a key removed from the set stops verifying without a restart. A
failed or malformed fetch keeps the keys already known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from common.config import VerifierSettings
from common.errors import Reason, unauthenticated

log = logging.getLogger("scoreboard.jwks")
MAX_JWKS_BYTES = 256 * 1024
# Members of a JWK that only a private key has; never republished.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def parse_jwks(
    document: str | bytes, algorithms: tuple[str, ...]
) -> tuple[dict[str, jwt.PyJWK], list[dict[str, Any]]] | None:
    """The usable signing keys by kid, and their public JWKs; None when it is no JWKS at all."""
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        return None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    keys: dict[str, jwt.PyJWK] = {}
    public: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if _PRIVATE_MEMBERS & entry.keys():
            # A set that publishes private or symmetric key material is misconfigured; never
            # verify with (or republish) such a key.
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError, TypeError):
            continue
        if key.algorithm_name in algorithms and kid not in keys:
            keys[kid] = key
            public.append(dict(entry))
    return keys, public


class JwksCache:
    def __init__(
        self,
        settings: VerifierSettings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._public: list[dict[str, Any]] = []
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def load(self) -> None:
        """Fetch the keys now (at start, so the first request does not pay for it)."""
        async with self._lock:
            await self._fetch()

    async def key(self, kid: str) -> jwt.PyJWK:
        found = self._keys.get(kid)
        if found is not None:
            if self._expired() and not self._lock.locked():
                async with self._lock:
                    if self._expired():
                        await self._fetch()
                found = self._keys.get(kid)
            if found is not None:
                return found
        async with self._lock:
            found = self._keys.get(kid)
            if found is None and self._may_refetch():
                await self._fetch()
                found = self._keys.get(kid)
        if found is None:
            raise unauthenticated(Reason.TOKEN_INVALID, "the token is signed by an unknown key")
        return found

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    def known_kids(self) -> list[str]:
        return sorted(self._keys)

    def document(self) -> dict[str, Any]:
        """The public keys verification uses, as a JWKS (what /.well-known/jwks.json serves)."""
        return {"keys": list(self._public)}

    def _may_refetch(self) -> bool:
        if self._fetched_at is None:
            return True
        return self._clock() - self._fetched_at >= self._settings.jwks_refresh_seconds

    def _expired(self) -> bool:
        return (
            self._fetched_at is not None
            and self._clock() - self._fetched_at >= self._settings.jwks_max_age_seconds
        )

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        document = await self._read()
        parsed = None if document is None else parse_jwks(document, self._settings.algorithms)
        if parsed is None:
            log.warning("JWKS unavailable or malformed; keeping the %d known keys", len(self._keys))
            return
        self._keys, self._public = parsed

    async def _read(self) -> bytes | None:
        if self._settings.jwks_file is not None:
            path: Path = self._settings.jwks_file
            try:
                return await asyncio.to_thread(path.read_bytes)
            except OSError:
                return None
        assert self._settings.jwks_url is not None
        client = self._http or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        try:
            async with client.stream("GET", self._settings.jwks_url) as response:
                if response.status_code != 200:
                    return None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        return None
                return bytes(body)
        except httpx.HTTPError:
            return None
        finally:
            if self._http is None:
                await client.aclose()
