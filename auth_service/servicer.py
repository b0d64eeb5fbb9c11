"""AuthService: protobuf <-> the account and token logic."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import grpc
import redis.asyncio as aioredis

from auth_service.config import Settings
from auth_service.issuer import TokenIssuer, hash_refresh_token, new_refresh_token
from auth_service.keeper import DenylistKeeper
from auth_service.passwords import MAX_PASSWORD, MIN_PASSWORD, Passwords
from auth_service.store import AuthStore, UserRow, new_family_id
from common.auth.principal import (
    ALL_SCOPES,
    ROLE_SERVICE,
    SERVICE_SUBJECT_PREFIX,
    current_principal,
    current_principal_var,
)
from common.auth.signing_keys import read_jwks
from common.errors import Reason, ServiceError, invalid, not_found, unauthenticated, unavailable
from common.ratelimit import Decision, SlidingWindowLimiter
from common.timestamps import timestamp_pb
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
Counted = list[tuple[str, str, Decision]]


def peer_host(peer: str | None) -> str:
    """The host of a gRPC peer ("ipv4:10.0.0.1:5555", "ipv6:[::1]:5555"), without the port, so
    per-address limits are per address and not per connection."""
    if not peer:
        return "unknown"
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer[:64]


def _printable(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in text)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _user_pb(user: UserRow) -> pb.User:
    return pb.User(
        user_id=user.user_id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        create_time=timestamp_pb(user.created_at),
    )


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        settings: Settings,
        store: AuthStore,
        passwords: Passwords,
        issuer: TokenIssuer,
        revocations: DenylistKeeper,
        limiter: SlidingWindowLimiter,
    ) -> None:
        self._settings = settings
        self._store = store
        self._passwords = passwords
        self._issuer = issuer
        self._revocations = revocations
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
        if not _printable(display_name):
            raise invalid("display name must not contain control or format characters")
        limits = self._settings.registration_limits
        # Counted once the request is valid and before the (costly) hash; a name already taken
        # creates no account and is taken back.
        counted = await self._count(
            (
                (
                    "register-address",
                    self._client_address(request.client_address, context),
                    limits.per_address,
                ),
            ),
            limits.window_seconds,
            Reason.REGISTRATION_RATE_LIMITED,
            "too many accounts registered from this address",
        )
        password_hash = await self._passwords.hash(request.password)
        try:
            user = await self._store.create_user(username, display_name, password_hash)
        except ServiceError:
            await self._uncount(counted)
            raise
        log.info("user registered", extra={"user_id": user.user_id})
        return pb.RegisterResponse(user=_user_pb(user), tokens=await self._session(user))

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        limits = self._settings.login_limits
        account = request.username.strip().lower()[:64]
        address = self._client_address(request.client_address, context)
        # Every attempt is counted before the password is checked (so concurrent guesses cannot
        # slip past the limit) and taken back when it succeeds: the limits count failures.
        counted = await self._count(
            (
                ("login-account", account, limits.per_account),
                ("login-address", address, limits.per_address),
            ),
            limits.window_seconds,
            Reason.LOGIN_RATE_LIMITED,
            "too many failed logins",
        )
        user = await self._store.user_by_username(account) if _USERNAME.match(account) else None
        ok = await self._passwords.verify(user.password_hash if user else None, request.password)
        if user is None or not ok or user.banned:
            raise unauthenticated(Reason.INVALID_CREDENTIALS, _BAD_LOGIN)
        await self._uncount(counted)
        if self._passwords.needs_rehash(user.password_hash):
            await self._store.set_password_hash(
                user.user_id, await self._passwords.hash(request.password)
            )
            log.info("password rehashed with current parameters", extra={"user_id": user.user_id})
        return pb.LoginResponse(user=_user_pb(user), tokens=await self._session(user))

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.RefreshTokenResponse:
        if not request.refresh_token or len(request.refresh_token) > 256:
            raise unauthenticated(Reason.REFRESH_TOKEN_INVALID, "the refresh token is invalid")
        token, new_hash = new_refresh_token()
        session_expires = self._session_expiry()
        outcome = await self._store.use_refresh_token(
            hash_refresh_token(request.refresh_token),
            new_hash,
            self._refresh_expiry(),
            session_expires,
            reuse_grace_seconds=self._settings.refresh_reuse_grace_seconds,
        )
        if outcome.reused:
            assert outcome.family_id is not None
            # The thief or the owner holds a newer token of this family: end the session, and
            # with it every access token it issued.
            await self._cache_revocations([], [(outcome.family_id, session_expires)])
            log.warning(
                "refresh token reused; session revoked", extra={"family": outcome.family_id}
            )
            raise unauthenticated(
                Reason.REFRESH_TOKEN_REUSED,
                "the refresh token was already used; sign in again",
            )
        if outcome.user is None or outcome.family_id is None or outcome.user.banned:
            raise unauthenticated(Reason.REFRESH_TOKEN_INVALID, "the refresh token is invalid")
        if outcome.retried:
            log.info(
                "refresh retried within the reuse grace; the unreceived successor is retired",
                extra={"family": outcome.family_id},
            )
        return pb.RefreshTokenResponse(
            tokens=self._token_pair(outcome.user, outcome.family_id, token)
        )

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        principal = current_principal()
        token_expires = datetime.fromtimestamp(principal.expires_at, UTC)
        await self._store.revoke_token(principal.token_id, token_expires)
        sessions = set()
        if principal.session and _is_uuid(principal.session):
            sessions.add(principal.session)
        if request.refresh_token and len(request.refresh_token) <= 256:
            found = await self._store.family_of(hash_refresh_token(request.refresh_token))
            # Only the caller's own session: a refresh token of someone else changes nothing.
            if found is not None and found[1] == principal.user_id:
                sessions.add(found[0])
        session_expires = self._session_expiry()
        for family in sessions:
            await self._store.revoke_family(family, session_expires)
        await self._cache_revocations(
            [(principal.token_id, token_expires)], [(f, session_expires) for f in sessions]
        )
        log.info("logged out", extra={"subject": principal.subject})
        return pb.LogoutResponse()

    async def IssueServiceToken(
        self, request: pb.IssueServiceTokenRequest, context: Context
    ) -> pb.IssueServiceTokenResponse:
        limits = self._settings.login_limits
        counted = await self._count(
            (("client-credentials", peer_host(context.peer()), limits.service_per_address),),
            limits.window_seconds,
            Reason.RATE_LIMITED,
            "too many failed client-credentials calls",
        )
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
        await self._uncount(counted)
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

    def _client_address(self, given: str, context: Context) -> str:
        """The end client's address: as stated by a trusted service (the edge, which saw the
        HTTP client), else this call's own peer. Anyone else stating one is ignored."""
        caller = current_principal_var.get()
        if given and caller is not None and caller.is_service:
            return given[:64]
        return peer_host(context.peer())

    async def _count(
        self,
        limits: tuple[tuple[str, str, int], ...],
        window_seconds: int,
        reason: Reason,
        what: str,
    ) -> Counted:
        """Count one attempt against each limit; refuse (and count nothing) when one is used
        up. Redis unreachable: refuse too (these limits guard against password guessing and
        account floods)."""
        counted: Counted = []
        try:
            for name, subject, limit in limits:
                decision = await self._limiter.hit(
                    name, subject, limit=limit, window_seconds=window_seconds
                )
                if not decision.allowed:
                    await self._uncount(counted)
                    retry = decision.retry_after_seconds
                    raise ServiceError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        reason,
                        f"{what}. Try again in {retry} seconds.",
                        {"retry_after": str(retry)},
                    )
                counted.append((name, subject, decision))
        except (OSError, aioredis.RedisError) as exc:
            raise unavailable("signing in is unavailable right now; try again shortly") from exc
        return counted

    async def _uncount(self, counted: Counted) -> None:
        for name, subject, decision in counted:
            await self._limiter.release(name, subject, decision.entry)

    async def _cache_revocations(
        self, tokens: list[tuple[str, datetime]], sessions: list[tuple[str, datetime]]
    ) -> None:
        """Announce committed revocations to every verifier (through Redis). Redis unreachable:
        the keeper copies them from PostgreSQL as soon as it answers again; the call still
        succeeds (the revocation is durable)."""
        await self._revocations.publish(tokens, sessions)

    def _session_expiry(self) -> datetime:
        """When the newest access token a session could hold right now expires."""
        return datetime.now(UTC) + timedelta(seconds=self._settings.access_token_seconds)

    async def _session(self, user: UserRow) -> pb.TokenPair:
        family = new_family_id()
        token, token_hash = new_refresh_token()
        if not await self._store.add_refresh_token(
            user.user_id, family, token_hash, self._refresh_expiry()
        ):
            raise unauthenticated(Reason.INVALID_CREDENTIALS, _BAD_LOGIN)
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
