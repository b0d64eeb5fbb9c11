"""Public keys for token verification: a JWKS file or URL, cached in memory.

A kid is only a lookup into these keys: jku, x5u and embedded jwk headers are never followed.
An unknown kid refetches the set at most once per refresh interval, so a flood of forged kids
cannot turn into a flood of fetches.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt

from common.config import VerifierSettings
from common.errors import Reason, unauthenticated


def parse_jwks(document: str | bytes, algorithms: tuple[str, ...]) -> dict[str, jwt.PyJWK]:
    data = json.loads(document)
    keys: dict[str, jwt.PyJWK] = {}
    for entry in data.get("keys", []):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError):
            continue
        if key.algorithm_name in algorithms:
            keys[kid] = key
    return keys


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
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Fetch the keys now (at start, so the first request does not pay for it)."""
        async with self._lock:
            await self._fetch()

    async def key(self, kid: str) -> jwt.PyJWK:
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

    def _may_refetch(self) -> bool:
        if self._fetched_at is None:
            return True
        return self._clock() - self._fetched_at >= self._settings.jwks_refresh_seconds

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()
        document = await self._read()
        if document is not None:
            self._keys = parse_jwks(document, self._settings.algorithms)

    async def _read(self) -> bytes | None:
        if self._settings.jwks_file is not None:
            path: Path = self._settings.jwks_file
            try:
                return await asyncio.to_thread(path.read_bytes)
            except OSError:
                return None
        assert self._settings.jwks_url is not None
        client = self._http or httpx.AsyncClient(timeout=5.0)
        try:
            response = await client.get(self._settings.jwks_url)
            response.raise_for_status()
            return response.content
        except httpx.HTTPError:
            return None
        finally:
            if self._http is None:
                await client.aclose()

    def known_kids(self) -> list[str]:
        return sorted(self._keys)
