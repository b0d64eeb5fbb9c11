"""AuthService: protobuf <-> the account and token logic."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from auth_service.config import Settings
from auth_service.issuer import TokenIssuer, hash_refresh_token, new_refresh_token
from auth_service.passwords import MAX_PASSWORD, MIN_PASSWORD, Passwords
from auth_service.store import AuthStore, UserRow, new_family_id
from common.denylist import Denylist
from common.errors import Reason, ServiceError, invalid, not_found, unauthenticated
from common.principal import ALL_SCOPES, ROLE_SERVICE, SERVICE_SUBJECT_PREFIX, current_principal
from common.ratelimit import SlidingWindowLimiter
from common.signing_keys import read_jwks
from scoreboard.auth.v1 import auth_service_pb2 as pb
from scoreboard.auth.v1 import auth_service_pb2_grpc

log = logging.getLogger("scoreboard.auth")
Context = grpc.aio.ServicerContext[Any, Any]

_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
PUBLIC_METHODS = frozenset(
    f"/scoreboard.auth.v1.AuthService/{m}"
    for m in ("Register", "Login", "RefreshToken", "IssueServiceToken", "GetJwks")
)
_BAD_LOGIN = "invalid username or password"


def _user_pb(user: UserRow) -> pb.User:
    created = Timestamp()
    created.FromDatetime(user.created_at)
    return pb.User(
        user_id=user.user_id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        create_time=created,
    )


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        settings: Settings,
        store: AuthStore,
        passwords: Passwords,
        issuer: TokenIssuer,
        denylist: Denylist,
        limiter: SlidingWindowLimiter,
    ) -> None:
        self._settings = settings
        self._store = store
        self._passwords = passwords
        self._issuer = issuer
        self._denylist = denylist
        self._limiter = limiter

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        username = request.username.strip()
        display_name = " ".join(request.display_name.split()) or username
        if not _USERNAME.match(username):
            raise invalid("username must be 3-32 letters, digits, '.', '_' or '-'")
        if not MIN_PASSWORD <= len(request.password) <= MAX_PASSWORD:
            raise invalid(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
        if len(display_name) > 40:
            raise invalid("display name must be at most 40 characters")
        password_hash = await self._passwords.hash(request.password)
        user = await self._store.create_user(username, display_name, password_hash)
        log.info("user registered", extra={"user_id": user.user_id})
        return pb.RegisterResponse(user=_user_pb(user), tokens=await self._session(user))

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        limits = self._settings.login_limits
        account = request.username.strip().lower()[:64]
        address = request.client_address or (context.peer() or "unknown")
        for name, subject, limit in (
            ("login-account", account, limits.per_account),
            ("login-address", address, limits.per_address),
        ):
            decision = await self._limiter.peek(
                name, subject, limit=limit, window_seconds=limits.window_seconds
            )
            if not decision.allowed:
                raise ServiceError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    Reason.LOGIN_RATE_LIMITED,
                    f"too many failed logins. Try again in {decision.retry_after_seconds} seconds.",
                    {"retry_after": str(decision.retry_after_seconds)},
                )
        user = await self._store.user_by_username(account) if _USERNAME.match(account) else None
        ok = await self._passwords.verify(user.password_hash if user else None, request.password)
        if user is None or not ok or user.banned:
            for name, subject, limit in (
                ("login-account", account, limits.per_account),
                ("login-address", address, limits.per_address),
            ):
                await self._limiter.hit(
                    name, subject, limit=limit, window_seconds=limits.window_seconds
                )
            raise unauthenticated(Reason.INVALID_CREDENTIALS, _BAD_LOGIN)
        if self._passwords.needs_rehash(user.password_hash):
            await self._store.set_password_hash(
                user.user_id, await self._passwords.hash(request.password)
            )
        return pb.LoginResponse(user=_user_pb(user), tokens=await self._session(user))

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.RefreshTokenResponse:
        if not request.refresh_token or len(request.refresh_token) > 256:
            raise unauthenticated(Reason.REFRESH_TOKEN_INVALID, "the refresh token is invalid")
        token, new_hash = new_refresh_token()
        outcome = await self._store.use_refresh_token(
            hash_refresh_token(request.refresh_token), new_hash, self._refresh_expiry()
        )
        if outcome.reused:
            log.warning("refresh token reused; family revoked", extra={"family": outcome.family_id})
            raise unauthenticated(
                Reason.REFRESH_TOKEN_REUSED,
                "the refresh token was already used; sign in again",
            )
        if outcome.user is None or outcome.family_id is None or outcome.user.banned:
            raise unauthenticated(Reason.REFRESH_TOKEN_INVALID, "the refresh token is invalid")
        return pb.RefreshTokenResponse(
            tokens=self._token_pair(outcome.user, outcome.family_id, token)
        )

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        principal = current_principal()
        expires = datetime.fromtimestamp(principal.expires_at, UTC)
        await self._store.revoke_token(principal.token_id, expires)
        ttl_ms = int((principal.expires_at - time.time()) * 1000) + 60_000
        await self._denylist.add([(principal.token_id, ttl_ms)])
        if principal.session:
            await self._store.revoke_family(principal.session)
        if request.refresh_token:
            family = await self._store.family_of(hash_refresh_token(request.refresh_token))
            if family is not None:
                await self._store.revoke_family(family)
        log.info("logged out", extra={"subject": principal.subject})
        return pb.LogoutResponse()

    async def IssueServiceToken(
        self, request: pb.IssueServiceTokenRequest, context: Context
    ) -> pb.IssueServiceTokenResponse:
        account = (
            await self._store.service_account(request.client_id)
            if 0 < len(request.client_id) <= 64
            else None
        )
        ok = await self._passwords.verify(
            account.secret_hash if account else None, request.client_secret
        )
        if account is None or not ok or account.disabled:
            raise unauthenticated(Reason.INVALID_CREDENTIALS, "invalid client credentials")
        requested = tuple(request.scopes) or account.scopes
        unknown = set(requested) - set(account.scopes)
        if unknown:
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED,
                Reason.PERMISSION_DENIED,
                f"scopes not granted to this client: {' '.join(sorted(unknown))}",
            )
        lifetime = self._settings.service_token_seconds
        issued = self._issuer.access_token(
            subject=SERVICE_SUBJECT_PREFIX + account.client_id,
            role=ROLE_SERVICE,
            scopes=tuple(s for s in requested if s in ALL_SCOPES),
            lifetime=lifetime,
        )
        return pb.IssueServiceTokenResponse(
            access_token=issued.token, expires_in=lifetime, token_type="Bearer"
        )

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        assert self._settings.verifier.jwks_file is not None
        return pb.GetJwksResponse(
            jwks_json=json.dumps(read_jwks(self._settings.verifier.jwks_file))
        )

    async def GetMe(self, request: pb.GetMeRequest, context: Context) -> pb.GetMeResponse:
        principal = current_principal()
        if principal.user_id is None:
            raise not_found(Reason.USER_NOT_FOUND, "a service account has no user")
        user = await self._store.user_by_id(principal.user_id)
        if user is None:
            raise not_found(Reason.USER_NOT_FOUND, "no such user")
        return pb.GetMeResponse(user=_user_pb(user))

    async def _session(self, user: UserRow) -> pb.TokenPair:
        family = new_family_id()
        token, token_hash = new_refresh_token()
        await self._store.add_refresh_token(
            user.user_id, family, token_hash, self._refresh_expiry()
        )
        return self._token_pair(user, family, token)

    def _token_pair(self, user: UserRow, family: str, refresh_token: str) -> pb.TokenPair:
        lifetime = self._settings.access_token_seconds
        issued = self._issuer.access_token(
            subject=user.user_id,
            role=user.role,
            scopes=(),
            lifetime=lifetime,
            name=user.display_name,
            session=family,
        )
        return pb.TokenPair(
            access_token=issued.token,
            refresh_token=refresh_token,
            expires_in=lifetime,
            token_type="Bearer",
        )

    def _refresh_expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._settings.refresh_token_seconds)
