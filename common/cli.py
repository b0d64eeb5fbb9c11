"""The `scoreboard` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common import cli_actions
from common.config import ConfigError, Env

Command = Callable[[argparse.Namespace], int]


def _run(args: argparse.Namespace) -> int:
    from common.devstack import run

    return run()


def _migrate(args: argparse.Namespace) -> int:
    from common.migrate import ensure_database, migrate

    url = Env().required("DATABASE_URL")
    if args.create:
        asyncio.run(ensure_database(url))
    applied = asyncio.run(migrate(url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _keys(args: argparse.Namespace) -> int:
    from common.signing_keys import ensure_keys, rotate_keys

    env = Env()
    private = Path(args.private_key or env.required("SIGNING_KEY_FILE"))
    jwks = Path(args.jwks or env.required("JWKS_FILE"))
    kid = rotate_keys(private, jwks) if args.action == "rotate" else ensure_keys(private, jwks)
    print(f"signing key id: {kid}")
    if args.action == "rotate":
        print(
            "restart auth_service to sign with the new key; verifiers accept both keys "
            "until the next rotation drops the old one"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scoreboard", description="Scoreboard: a live leaderboard."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole stack locally (embedded PostgreSQL and Redis)")
    run.set_defaults(handler=_run)
    migrate = sub.add_parser("migrate", help="apply database migrations (SCOREBOARD_DATABASE_URL)")
    migrate.add_argument("--create", action="store_true", help="create the database if missing")
    migrate.set_defaults(handler=_migrate)
    keys = sub.add_parser("keys", help="create or rotate the token signing key")
    keys.add_argument("action", choices=["init", "rotate"])
    keys.add_argument("--private-key", help="default: SCOREBOARD_SIGNING_KEY_FILE")
    keys.add_argument("--jwks", help="default: SCOREBOARD_JWKS_FILE")
    keys.set_defaults(handler=_keys)
    cli_actions.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Command = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
