"""Signing keys and the published JWKS.

The private key (PEM) lives only with auth_service. The JWKS file holds the public keys every
verifier trusts: rotation writes a new private key and adds its public key to the set while the
previous public key stays, so tokens signed before the rotation verify until they expire. The
previous private key is kept beside the new one (`<key>.previous`) so a restarted auth_service
can keep signing with it until the new key is due to become active.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ALGORITHM = "EdDSA"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: ed25519.Ed25519PublicKey) -> dict[str, Any]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk: dict[str, Any] = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    # RFC 7638 thumbprint: SHA-256 of the required members, sorted, no whitespace.
    thumbprint = hashlib.sha256(json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode())
    jwk.update({"kid": _b64(thumbprint.digest()), "alg": ALGORITHM, "use": "sig"})
    return jwk


@dataclass(frozen=True)
class SigningKey:
    private_key: ed25519.Ed25519PrivateKey
    kid: str

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ed25519.Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(loaded, public_jwk(loaded.public_key())["kid"])


def previous_key_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".previous")


def _write_private(path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    tmp.replace(path)


def read_jwks(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"keys": []}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write_jwks(path: Path, jwks: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jwks, indent=2) + "\n")
    tmp.replace(path)


def ensure_keys(private_path: Path, jwks_path: Path) -> str:
    """Create a key pair when there is none; make sure its public key is published. Returns kid."""
    if not private_path.exists():
        _write_private(private_path, ed25519.Ed25519PrivateKey.generate())
    key = SigningKey.load(private_path)
    jwks = read_jwks(jwks_path)
    if not any(k.get("kid") == key.kid for k in jwks["keys"]):
        jwks["keys"].append(public_jwk(key.private_key.public_key()))
        _write_jwks(jwks_path, jwks)
    return key.kid


def rotate_keys(private_path: Path, jwks_path: Path, *, keep: int = 2) -> str:
    """New signing key; the JWKS keeps the newest `keep` public keys (the overlap)."""
    if keep < 2:
        raise ValueError("rotation keeps at least the previous and the new public key")
    new = ed25519.Ed25519PrivateKey.generate()
    jwk = public_jwk(new.public_key())
    jwks = read_jwks(jwks_path)
    # Publish first, then switch signing, so no token is ever signed by an unpublished key.
    jwks["keys"] = [*jwks["keys"], jwk][-keep:]
    _write_jwks(jwks_path, jwks)
    if private_path.exists():
        old = SigningKey.load(private_path)
        _write_private(previous_key_path(private_path), old.private_key)
    _write_private(private_path, new)
    return str(jwk["kid"])
