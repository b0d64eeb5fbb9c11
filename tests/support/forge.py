"""Crafting tokens in tests: well-formed ones signed with a given key, and every kind of forgery
(unsigned, HMAC with the public key, tampered, wrong claims, attacker keys). Built with PyJWT and
cryptography directly, never with the code under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ISSUER = "scoreboard"
AUDIENCE = "scoreboard"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid access token's claims for a fresh user; None values remove a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "role": "user",
        "scope": "",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def ed25519_jwk(public: ed25519.Ed25519PublicKey, kid: str) -> dict[str, Any]:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": kid, "alg": "EdDSA", "use": "sig"}


def rsa_jwk(public: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    numbers = public.public_numbers()

    def uint(value: int) -> str:
        return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {
        "kty": "RSA",
        "n": uint(numbers.n),
        "e": uint(numbers.e),
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
    }


class Signer:
    """A key pair that signs tokens: ours (from the key file) or an attacker's."""

    def __init__(self, private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey, kid: str) -> None:
        self.private = private
        self.kid = kid

    @classmethod
    def from_file(cls, path: Path, kid: str) -> Signer:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return cls(key, kid)

    @classmethod
    def ed25519(cls, kid: str | None = None) -> Signer:
        return cls(ed25519.Ed25519PrivateKey.generate(), kid or f"test-{uuid.uuid4().hex[:8]}")

    @classmethod
    def rsa(cls, kid: str | None = None) -> Signer:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key, kid or f"test-rsa-{uuid.uuid4().hex[:8]}")

    @property
    def algorithm(self) -> str:
        return "EdDSA" if isinstance(self.private, ed25519.Ed25519PrivateKey) else "RS256"

    def jwk(self) -> dict[str, Any]:
        if isinstance(self.private, ed25519.Ed25519PrivateKey):
            return ed25519_jwk(self.private.public_key(), self.kid)
        return rsa_jwk(self.private.public_key(), self.kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self,
        payload: dict[str, Any] | None = None,
        *,
        typ: str | None = "at+jwt",
        kid: Any = ...,
        **headers: Any,
    ) -> str:
        header: dict[str, Any] = {"kid": self.kid if kid is ... else kid}
        if typ is not None:
            header["typ"] = typ
        header.update(headers)
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(
            payload if payload is not None else claims(),
            self.private,
            algorithm=self.algorithm,
            headers=header,
        )


def raw_eddsa(signer: Signer, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Any header at all (even ones PyJWT refuses to write), really signed with EdDSA."""
    assert isinstance(signer.private, ed25519.Ed25519PrivateKey)
    signing_input = f"{segment({'alg': 'EdDSA', **header})}.{segment(payload)}"
    return f"{signing_input}.{b64(signer.private.sign(signing_input.encode()))}"


def unsigned(payload: dict[str, Any], kid: str) -> str:
    """alg: none, no signature."""
    return f"{segment({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{segment(payload)}."


def hmac_with(secret: bytes, payload: dict[str, Any], kid: str) -> str:
    """HS256 keyed with (for example) the verifier's public key: the classic confusion attack."""
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def tampered(token: str, **changes: Any) -> str:
    """The same signature over a changed payload."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    return f"{header}.{segment(data)}.{signature}"
