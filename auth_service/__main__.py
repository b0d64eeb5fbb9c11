"""python -m auth_service [serve | create-service-account | set-role]"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys

from auth_service.config import Settings
from auth_service.passwords import Passwords
from auth_service.server import serve
from auth_service.store import AuthStore
from common import service
from common.config import ConfigError, DatabaseSettings, Env
from common.db import open_pool
from common.principal import ALL_SCOPES


async def _save_account(client_id: str, secret: str, scopes: tuple[str, ...]) -> None:
    from auth_service.config import PasswordSettings

    pool = await open_pool(DatabaseSettings.from_env(Env()), name="auth_service-cli")
    try:
        await AuthStore(pool).save_service_account(
            client_id, await Passwords(PasswordSettings()).hash(secret), scopes
        )
    finally:
        await pool.close()


async def _set_role(username: str, role: str) -> bool:
    pool = await open_pool(DatabaseSettings.from_env(Env()), name="auth_service-cli")
    try:
        return await AuthStore(pool).set_role(username, role)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (default)")
    account = sub.add_parser(
        "create-service-account", help="create a service account, or rotate its secret"
    )
    account.add_argument("--client-id", required=True)
    account.add_argument("--scopes", required=True, help="space or comma separated")
    account.add_argument(
        "--secret",
        help="use this secret instead of a generated one (or set SCOREBOARD_SERVICE_ACCOUNT_SECRET,"
        " which keeps it out of the process list)",
    )
    role = sub.add_parser("set-role", help="make a user an admin (or a user again)")
    role.add_argument("--username", required=True)
    role.add_argument("--role", choices=["user", "admin"], required=True)
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "serve"):
            return service.main(Settings.from_env, serve)
        if args.command == "create-service-account":
            scopes = tuple(s for s in args.scopes.replace(",", " ").split() if s)
            unknown = set(scopes) - ALL_SCOPES
            if unknown:
                print(f"unknown scopes: {' '.join(sorted(unknown))}", file=sys.stderr)
                return 2
            secret = (
                args.secret or Env().optional("SERVICE_ACCOUNT_SECRET") or secrets.token_urlsafe(32)
            )
            asyncio.run(_save_account(args.client_id, secret, scopes))
            print(f"client_id={args.client_id}\nclient_secret={secret}")
            return 0
        if args.command == "set-role":
            if not asyncio.run(_set_role(args.username, args.role)):
                print(f"no user named {args.username}", file=sys.stderr)
                return 1
            print(f"{args.username} is now {args.role}")
            return 0
    except (ConfigError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
