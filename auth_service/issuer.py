"""Issuing tokens: signed access tokens (EdDSA, kid, typ at+jwt) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from common.signing_keys import ALGORITHM, SigningKey


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: float


class TokenIssuer:
    def __init__(self, key_file: Path, *, issuer: str, audience: str) -> None:
        self._key_file = key_file
        self._key = SigningKey.load(key_file)
        self._issuer = issuer
        self._audience = audience

    def reload_key(self) -> None:
        """Pick up a rotated key (the CLI writes the new one; the JWKS already lists it)."""
        self._key = SigningKey.load(self._key_file)

    @property
    def kid(self) -> str:
        return self._key.kid

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
            claims,
            self._key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self._key.kid, "typ": "at+jwt"},
        )
        return IssuedToken(token, jti, float(now + lifetime))


def new_refresh_token() -> tuple[str, bytes]:
    """An opaque refresh token and the hash stored for it."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
