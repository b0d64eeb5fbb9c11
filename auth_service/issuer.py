"""Issuing tokens: signed access tokens (EdDSA, kid, typ at+jwt) and opaque refresh tokens.

A rotated key is picked up without a restart: the key file's mtime is checked at most once a
second. The new key signs only once it has been published for `activation_seconds` (at least
the verifiers' JWKS refresh interval), so no verifier ever sees a kid it may not fetch yet;
until then the previous key (kept in memory, or in the `.previous` file after a restart) signs.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt

from common.auth.signing_keys import ALGORITHM, SigningKey, previous_key_path

log = logging.getLogger("scoreboard.auth.keys")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: float


class TokenIssuer:
    def __init__(
        self,
        key_file: Path,
        *,
        issuer: str,
        audience: str,
        activation_seconds: float = 0.0,
        check_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key_file = key_file
        self._issuer = issuer
        self._audience = audience
        self._activation = activation_seconds
        self._check_seconds = check_seconds
        self._clock = clock
        self._mtime = key_file.stat().st_mtime
        self._current = SigningKey.load(key_file)
        self._activate_at = self._mtime + activation_seconds
        self._previous: SigningKey | None = None
        previous = previous_key_path(key_file)
        if clock() < self._activate_at and previous.exists():
            # Restarted during an activation period: keep signing with the previous key.
            self._previous = SigningKey.load(previous)
        self._next_check = clock() + check_seconds

    def reload_key(self) -> None:
        """Look at the key file now (rotation writes a new one; the JWKS already lists it)."""
        try:
            mtime = self._key_file.stat().st_mtime
            if mtime == self._mtime:
                return
            loaded = SigningKey.load(self._key_file)
        except (OSError, ValueError) as exc:
            log.warning("cannot read the signing key; still signing with kid %s: %s", self.kid, exc)
            return
        self._mtime = mtime
        if loaded.kid == self._current.kid:
            return
        self._previous = self._signing_key(self._clock())
        self._current = loaded
        self._activate_at = mtime + self._activation
        log.info(
            "new signing key loaded",
            extra={"kid": loaded.kid, "active_in_seconds": round(self._activation, 1)},
        )

    @property
    def kid(self) -> str:
        return self._signing_key(self._clock()).kid

    def _signing_key(self, now: float) -> SigningKey:
        if self._previous is not None:
            if now < self._activate_at:
                return self._previous
            self._previous = None
        return self._current

    def _key_now(self) -> SigningKey:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._check_seconds
            self.reload_key()
        return self._signing_key(now)

    def access_token(
        self,
        *,
        subject: str,
        role: str,
        scopes: tuple[str, ...],
        lifetime: int,
        name: str = "",
        session: str | None = None,
    ) -> IssuedToken:
        key = self._key_now()
        now = int(time.time())
        jti = str(uuid.uuid4())
        claims: dict[str, object] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": jti,
            "role": role,
            "scope": " ".join(scopes),
        }
        if name:
            claims["name"] = name
        if session:
            claims["sid"] = session
        token = jwt.encode(
            claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        return IssuedToken(token, jti, float(now + lifetime))


def new_refresh_token() -> tuple[str, bytes]:
    """An opaque refresh token and the hash stored for it."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
