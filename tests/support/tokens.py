"""Tokens for tests: the stack's three service accounts, new service accounts with chosen
scopes, users registered over gRPC, and an issuer holding the stack's own signing key."""

from __future__ import annotations

import secrets

import grpc

from auth_service.config import PasswordSettings
from auth_service.issuer import TokenIssuer
from auth_service.passwords import Passwords
from auth_service.store import AuthStore
from scoreboard.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from tests.support.clients import metadata, service_token
from tests.support.stack import Stack


async def game_token(stack: Stack) -> str:
    """A game server's token (scores:write, leaderboard:read, stream:watch)."""
    return await service_token(stack.address("auth"), "game-server", stack.game_secret)


async def admin_token(stack: Stack) -> str:
    """The admin tool's token (every scope, admin included)."""
    return await service_token(stack.address("auth"), "admin-tool", stack.admin_secret)


async def edge_token(stack: Stack) -> str:
    """The edge's own service token: no scores:write scope."""
    return await service_token(stack.address("auth"), "edge", stack.edge_secret)


async def admin_metadata(stack: Stack) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying the admin tool's token."""
    return metadata(await admin_token(stack))


async def game_server_metadata(stack: Stack) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying a game server's token (no admin scope)."""
    return metadata(await game_token(stack))


async def service_account(stack: Stack, client_id: str, scopes: tuple[str, ...]) -> str:
    """Create a service account with these scopes; returns a token of it."""
    secret = secrets.token_urlsafe(24)
    await AuthStore(stack.pool).save_service_account(
        client_id, await Passwords(PasswordSettings()).hash(secret), scopes
    )
    return await service_token(stack.address("auth"), client_id, secret)


async def register(stack: Stack, name: str | None = None) -> tuple[str, str]:
    """A new user over gRPC: (user id, access token)."""
    async with grpc.aio.insecure_channel(stack.address("auth")) as channel:
        reply = await auth_service_pb2_grpc.AuthServiceStub(channel).Register(
            auth_service_pb2.RegisterRequest(
                username=name or f"u{secrets.token_hex(5)}",
                password="correct horse battery",
                display_name=name or "",
            )
        )
    return reply.user.user_id, reply.tokens.access_token


def issuer(stack: Stack) -> TokenIssuer:
    """Mints tokens with the stack's signing key (for expired or odd tokens)."""
    return TokenIssuer(stack.config.keys.private, issuer="scoreboard", audience="scoreboard")
