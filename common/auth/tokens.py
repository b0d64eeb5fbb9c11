"""Strict access-token verification: one implementation for the edge and every gRPC server.

Fixed algorithm allow-list (asymmetric only), required claims, exact aud and iss, small leeway,
kid only as a lookup into known keys (jku, x5u, x5c and jwk headers are never used), typ
checked (header and, when present, claim), unknown critical headers refused, revocations
checked for the token (jti), its login session (sid) and its subject (a ban refuses every token
issued before it) in the process's in-memory mirror.
Verified claims are cached per process (bounded, until they expire): a token is verified once
per process, and checking it again costs no signature check and no Redis call.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import jwt

from common.auth.jwks import JwksCache
from common.auth.principal import (
    ROLE_ADMIN,
    ROLE_SERVICE,
    ROLE_USER,
    SERVICE_SUBJECT_PREFIX,
    Principal,
)
from common.auth.revocation_mirror import RevocationMirror
from common.config import VerifierSettings
from common.errors import Reason, ServiceError, unauthenticated

MAX_TOKEN_BYTES = 8192
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]
ROLES = frozenset({ROLE_USER, ROLE_ADMIN, ROLE_SERVICE})
# A "typ" claim, when an issuer sets one (Keycloak does), must say this is an access token:
# its refresh, ID and logout tokens say "Refresh", "ID" and "Logout".
ACCESS_TYP_CLAIMS = frozenset({"bearer", "at+jwt"})
# Verified tokens remembered (about 1 KB each): recently used ones stay.
_CACHE_SIZE = 16384


class TokenVerifier:
    def __init__(
        self, settings: VerifierSettings, keys: JwksCache, revocations: RevocationMirror | None
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._revocations = revocations if settings.denylist else None
        # Signature checks are the expensive part; a token seen before skips them (expiry, the
        # key still being published and the revocations are checked every time).
        self._verified: OrderedDict[str, tuple[Principal, str]] = OrderedDict()

    @property
    def keys(self) -> JwksCache:
        return self._keys

    @property
    def revocations(self) -> RevocationMirror | None:
        return self._revocations

    async def aclose(self) -> None:
        """Stop following revocations (the process is shutting down)."""
        if self._revocations is not None:
            await self._revocations.aclose()

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is None or not self._keys.knows(cached[1]):
            principal, kid = await self._verify_signed(token)
            self._remember(token, principal, kid)
        else:
            principal = cached[0]
            self._verified.move_to_end(token)
            if principal.expires_at + self._settings.leeway_seconds < time.time():
                self._verified.pop(token, None)
                raise unauthenticated(Reason.TOKEN_EXPIRED, "the token has expired")
        await self.ensure_not_revoked(
            principal.token_id, principal.session, principal.subject, principal.issued_at
        )
        return principal

    async def ensure_not_revoked(
        self, token_id: str, session: str = "", subject: str = "", issued_at: float | None = None
    ) -> None:
        """Refuse a token (or something issued on its strength, like a WebSocket ticket) whose
        id or login session has been revoked since, or whose subject was banned after it was
        issued."""
        if self._revocations is not None and await self._revocations.is_revoked(
            token_id, session, subject, issued_at
        ):
            raise unauthenticated(Reason.TOKEN_REVOKED, "the token has been revoked")

    def _remember(self, token: str, principal: Principal, kid: str) -> None:
        self._verified[token] = (principal, kid)
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)

    async def _verify_signed(self, token: str) -> tuple[Principal, str]:
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise _invalid("the token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("the token is malformed") from None
        if "crit" in header or "b64" in header:
            # No header extension is understood here (RFC 7515 4.1.11).
            raise _invalid("the token uses an unsupported critical header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._settings.algorithms:
            raise _invalid("the token's algorithm is not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in {
            t.lower() for t in self._settings.token_types
        }:
            raise _invalid("the token is not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise _invalid("the token names no key")
        key = await self._keys.key(kid)
        if key.algorithm_name != alg:
            raise _invalid("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": REQUIRED_CLAIMS, "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated(Reason.TOKEN_EXPIRED, "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("the token is not valid yet") from None
        except jwt.InvalidTokenError:
            raise _invalid("the token is invalid") from None
        return _principal(claims, token), kid


def _principal(claims: dict[str, Any], token: str) -> Principal:
    sub, jti, exp = claims["sub"], claims["jti"], claims["exp"]
    if not isinstance(sub, str) or not sub or len(sub) > 256:
        raise _invalid("the token's subject is malformed")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise _invalid("the token's id is malformed")
    typ = claims.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TYP_CLAIMS):
        raise _invalid("the token is not an access token")
    role = claims.get("role", ROLE_USER)
    if not isinstance(role, str) or role not in ROLES:
        raise _invalid("the token's role is malformed")
    scope = claims.get("scope", "")
    if isinstance(scope, str):
        scopes = frozenset(scope.split())
    elif isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scopes = frozenset(scope)
    else:
        raise _invalid("the token's scope is malformed")
    if role == ROLE_SERVICE and not sub.startswith(SERVICE_SUBJECT_PREFIX):
        # External issuers (Keycloak) name the client in azp or client_id, not in sub.
        client = claims.get("azp") or claims.get("client_id")
        if not isinstance(client, str) or not client or len(client) > 128:
            raise _invalid("a service token must name a service subject")
        sub = SERVICE_SUBJECT_PREFIX + client
    elif role != ROLE_SERVICE and sub.startswith(SERVICE_SUBJECT_PREFIX):
        raise _invalid("only a service token may name a service subject")
    name = claims.get("name", "")
    session = claims.get("sid", "")
    iat = claims["iat"]
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise _invalid("the token's issue time is malformed")
    return Principal(
        subject=sub,
        role=role,
        scopes=scopes,
        token_id=jti,
        expires_at=float(exp),
        name=name if isinstance(name, str) else "",
        session=session if isinstance(session, str) and len(session) <= 256 else "",
        issued_at=float(iat),
        token=token,
    )


def _invalid(message: str) -> ServiceError:
    return unauthenticated(Reason.TOKEN_INVALID, message)
