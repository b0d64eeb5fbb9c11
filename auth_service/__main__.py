"""python -m auth_service [serve | create-service-account | rotate-service-secret |
disable-service-account | enable-service-account | set-role]"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from auth_service.config import PasswordSettings, Settings
from auth_service.passwords import Passwords
from auth_service.server import serve
from auth_service.store import AuthStore
from common import service
from common.auth.principal import ALL_SCOPES
from common.config import ConfigError, DatabaseSettings, Env
from common.db import open_pool

T = TypeVar("T")
_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


async def _with_store(work: Callable[[AuthStore], Awaitable[T]]) -> T:
    pool = await open_pool(DatabaseSettings.from_env(Env()), name="auth_service-cli")
    try:
        return await work(AuthStore(pool))
    finally:
        await pool.close()


async def _hash(secret: str) -> str:
    return await Passwords(PasswordSettings.from_env(Env())).hash(secret)


async def _create(client_id: str, secret: str, scopes: tuple[str, ...]) -> None:
    secret_hash = await _hash(secret)
    await _with_store(lambda store: store.save_service_account(client_id, secret_hash, scopes))


async def _rotate(client_id: str, secret: str) -> bool:
    secret_hash = await _hash(secret)
    return await _with_store(lambda store: store.rotate_service_secret(client_id, secret_hash))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m auth_service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (default)")
    create = sub.add_parser(
        "create-service-account",
        help="create a service account, or replace the secret and scopes of an existing one",
    )
    create.add_argument("--client-id", required=True)
    create.add_argument("--scopes", required=True, help="space or comma separated")
    create.add_argument(
        "--secret",
        help="use this secret instead of a generated one (or set SCOREBOARD_SERVICE_ACCOUNT_SECRET,"
        " which keeps it out of the process list)",
    )
    rotate = sub.add_parser(
        "rotate-service-secret", help="give an existing service account a new secret"
    )
    rotate.add_argument("--client-id", required=True)
    rotate.add_argument(
        "--secret",
        help="use this secret instead of a generated one (or set SCOREBOARD_SERVICE_ACCOUNT_SECRET,"
        " which keeps it out of the process list)",
    )
    for name, text in (("disable", "refuse"), ("enable", "accept again")):
        toggle = sub.add_parser(
            f"{name}-service-account", help=f"{text} the account's client-credentials calls"
        )
        toggle.add_argument("--client-id", required=True)
    role = sub.add_parser("set-role", help="make a user an admin (or a user again)")
    role.add_argument("--username", required=True)
    role.add_argument("--role", choices=["user", "admin"], required=True)
    return parser


def _new_secret(given: str | None) -> str:
    # SCOREBOARD_SERVICE_ACCOUNT_SECRET keeps a chosen secret out of the process list.
    given = given or Env().optional("SERVICE_ACCOUNT_SECRET")
    if given is not None and len(given) < 24:
        raise ValueError("a client secret must be at least 24 characters")
    return given or secrets.token_urlsafe(32)


def _run(args: argparse.Namespace) -> int:
    command: str = args.command
    names_client = command.endswith("-service-account") or command == "rotate-service-secret"
    if names_client and not _CLIENT_ID.match(args.client_id):
        print("client id must be 1-64 of a-z, 0-9, '_' or '-'", file=sys.stderr)
        return 2
    if command == "create-service-account":
        scopes = tuple(sorted({s for s in args.scopes.replace(",", " ").split() if s}))
        unknown = set(scopes) - ALL_SCOPES
        if unknown:
            print(f"unknown scopes: {' '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        secret = _new_secret(args.secret)
        asyncio.run(_create(args.client_id, secret, scopes))
        print(f"client_id={args.client_id}\nclient_secret={secret}")
        return 0
    if command == "rotate-service-secret":
        secret = _new_secret(args.secret)
        if not asyncio.run(_rotate(args.client_id, secret)):
            print(f"no service account {args.client_id}", file=sys.stderr)
            return 1
        print(f"client_id={args.client_id}\nclient_secret={secret}")
        return 0
    if command in ("disable-service-account", "enable-service-account"):
        disabled = command.startswith("disable")
        client_id: str = args.client_id
        if not asyncio.run(
            _with_store(lambda store: store.set_service_account_disabled(client_id, disabled))
        ):
            print(f"no service account {client_id}", file=sys.stderr)
            return 1
        print(f"{client_id} is now {'disabled' if disabled else 'enabled'}")
        return 0
    username: str = args.username
    role: str = args.role
    if not asyncio.run(_with_store(lambda store: store.set_role(username, role))):
        print(f"no user named {username}", file=sys.stderr)
        return 1
    print(f"{username} is now {role}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in (None, "serve"):
            return service.main(Settings.from_env, serve)
        return _run(args)
    except (ConfigError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
