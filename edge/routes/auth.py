"""Accounts and sessions: register, login, refresh, logout, me (AuthService behind)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from common.errors import Reason, unauthenticated
from edge.api import ApiRoute
from edge.bodies import HttpError, read_json
from edge.limits import enforce
from edge.responses import JSON, ok
from edge.schemas import (
    Empty,
    Envelope,
    LoginBody,
    LogoutBody,
    RefreshBody,
    RegisterBody,
    Session,
    User,
)
from edge.state import client_address, edge_state, require_principal
from scoreboard.auth.v1 import auth_service_pb2 as pb

# The refresh token also travels as an httpOnly cookie, so browsers need not keep it in script.
REFRESH_COOKIE = "sb_refresh"
COOKIE_PATH = "/api/auth"
COOKIE_MAX_AGE = 30 * 86400
CSRF_HEADER = "x-requested-with"


def _user(user: pb.User) -> dict[str, str]:
    return {
        "userId": user.user_id,
        "username": user.username,
        "displayName": user.display_name,
        "role": user.role,
    }


def _session(
    request: Request, tokens: pb.TokenPair, user: pb.User | None, status: int = 200
) -> JSON:
    data: dict[str, object] = {
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "expiresIn": tokens.expires_in,
        "tokenType": tokens.token_type,
    }
    if user is not None:
        data["user"] = _user(user)
    response = ok(data, status, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        REFRESH_COOKIE,
        tokens.refresh_token,
        max_age=COOKIE_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def register(request: Request) -> Response:
    body = await read_json(request, RegisterBody)
    state = edge_state(request)
    # With the edge's own token, like login: the per-address limit counts the real client.
    reply = await state.upstream.call_as_edge(
        state.upstream.auth.Register,
        pb.RegisterRequest(
            username=body.username,
            password=body.password,
            display_name=body.displayName or "",
            client_address=client_address(request),
        ),
    )
    return _session(request, reply.tokens, reply.user, status=201)


async def login(request: Request) -> Response:
    body = await read_json(request, LoginBody)
    state = edge_state(request)
    # Sent with the edge's own token: auth_service trusts the client address only from a
    # service, so its per-address limit counts the real client.
    reply = await state.upstream.call_as_edge(
        state.upstream.auth.Login,
        pb.LoginRequest(
            username=body.username, password=body.password, client_address=client_address(request)
        ),
    )
    return _session(request, reply.tokens, reply.user)


def _refresh_token(request: Request, given: str | None) -> str | None:
    if given:
        return given
    cookie = request.cookies.get(REFRESH_COOKIE)
    if cookie and request.headers.get(CSRF_HEADER) != "scoreboard":
        raise HttpError(
            403,
            "CSRF_HEADER_REQUIRED",
            "send X-Requested-With: scoreboard to use the refresh cookie",
        )
    return cookie


async def refresh(request: Request) -> Response:
    state = edge_state(request)
    await enforce(state, "refresh", client_address(request), state.settings.refreshes_per_minute)
    body = await read_json(request, RefreshBody)
    token = _refresh_token(request, body.refreshToken)
    if not token:
        raise unauthenticated(Reason.REFRESH_TOKEN_INVALID, "a refresh token is required")
    reply = await state.upstream.call(
        state.upstream.auth.RefreshToken, pb.RefreshTokenRequest(refresh_token=token), token=None
    )
    return _session(request, reply.tokens, None)


async def logout(request: Request) -> Response:
    principal = await require_principal(request)
    body = await read_json(request, LogoutBody)
    state = edge_state(request)
    # The token's own session is revoked in any case; a refresh token named in the body (or the
    # cookie, when the CSRF header says a script of ours sent it) ends that session too.
    refresh_token = body.refreshToken
    if not refresh_token and request.headers.get(CSRF_HEADER) == "scoreboard":
        refresh_token = request.cookies.get(REFRESH_COOKIE)
    await state.upstream.call(
        state.upstream.auth.Logout,
        pb.LogoutRequest(refresh_token=refresh_token or ""),
        token=principal.token,
    )
    response = ok({})
    response.delete_cookie(REFRESH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


async def me(request: Request) -> Response:
    principal = await require_principal(request)
    state = edge_state(request)
    reply = await state.upstream.call(
        state.upstream.auth.GetMe, pb.GetMeRequest(), token=principal.token
    )
    return ok(_user(reply.user))


ROUTES = [
    ApiRoute(
        "POST",
        "/api/auth/register",
        register,
        "Create an account and sign in",
        "auth",
        body=RegisterBody,
        response=Envelope[Session],
        status=201,
        errors=(409, 422, 429),
    ),
    ApiRoute(
        "POST",
        "/api/auth/login",
        login,
        "Sign in",
        "auth",
        body=LoginBody,
        response=Envelope[Session],
        errors=(401, 422, 429),
        description="Failures are uniform and rate limited per account and per address.",
    ),
    ApiRoute(
        "POST",
        "/api/auth/refresh",
        refresh,
        "Rotate the refresh token",
        "auth",
        body=RefreshBody,
        response=Envelope[Session],
        errors=(401, 403, 429),
        description="Each refresh token works once; reusing one revokes the whole session. "
        "Rate limited per client address.",
    ),
    ApiRoute(
        "POST",
        "/api/auth/logout",
        logout,
        "Sign out (revokes the token and session)",
        "auth",
        auth="required",
        body=LogoutBody,
        response=Envelope[Empty],
        errors=(401,),
    ),
    ApiRoute(
        "GET",
        "/api/auth/me",
        me,
        "The signed-in account",
        "auth",
        auth="required",
        response=Envelope[User],
        errors=(401, 404),
        description="404 for a service account's token (it has no account).",
    ),
]
