"""Strict access-token verification: one implementation for the edge and every gRPC server.

Fixed algorithm allow-list, required claims, exact aud and iss, small leeway, kid only as a
lookup into known keys, typ checked, denylist checked.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import jwt

from common.config import VerifierSettings
from common.denylist import Denylist
from common.errors import Reason, ServiceError, unauthenticated
from common.jwks import JwksCache
from common.principal import ROLE_SERVICE, ROLE_USER, Principal

MAX_TOKEN_BYTES = 8192
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]
_CACHE_SIZE = 4096


class TokenVerifier:
    def __init__(
        self, settings: VerifierSettings, keys: JwksCache, denylist: Denylist | None
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._denylist = denylist if settings.denylist else None
        # Signature checks are the expensive part; a token seen before skips them (the
        # denylist and expiry are still checked every time).
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        principal = self._verified.get(token)
        if principal is None:
            principal = await self._verify_signed(token)
            self._remember(token, principal)
        elif principal.expires_at + self._settings.leeway_seconds < time.time():
            self._verified.pop(token, None)
            raise unauthenticated(Reason.TOKEN_EXPIRED, "the token has expired")
        if self._denylist is not None and await self._denylist.is_revoked(principal.token_id):
            raise unauthenticated(Reason.TOKEN_REVOKED, "the token has been revoked")
        return principal

    def _remember(self, token: str, principal: Principal) -> None:
        self._verified[token] = principal
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)

    async def _verify_signed(self, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise _invalid("the token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("the token is malformed") from None
        alg = header.get("alg")
        if alg not in self._settings.algorithms:
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
        return _principal(claims, token)


def _principal(claims: dict[str, Any], token: str) -> Principal:
    sub, jti, exp = claims["sub"], claims["jti"], claims["exp"]
    if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
        raise _invalid("the token's subject or id is malformed")
    role = claims.get("role", ROLE_USER)
    if not isinstance(role, str):
        raise _invalid("the token's role is malformed")
    scope = claims.get("scope", "")
    if isinstance(scope, str):
        scopes = frozenset(scope.split())
    elif isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scopes = frozenset(scope)
    else:
        raise _invalid("the token's scope is malformed")
    if role == ROLE_SERVICE and not sub.startswith("svc:"):
        raise _invalid("a service token must name a service subject")
    name = claims.get("name", "")
    session = claims.get("sid", "")
    return Principal(
        subject=sub,
        role=role,
        scopes=scopes,
        token_id=jti,
        expires_at=float(exp),
        name=name if isinstance(name, str) else "",
        session=session if isinstance(session, str) else "",
        token=token,
    )


def _invalid(message: str) -> ServiceError:
    return unauthenticated(Reason.TOKEN_INVALID, message)
