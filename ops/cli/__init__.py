"""The `scoreboard` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common.config import ConfigError, Env
from ops.cli import actions, admin, anomalies, boards, ranking

Command = Callable[[argparse.Namespace], int]


def _run(args: argparse.Namespace) -> int:
    from ops.devstack import run

    return run()


def _migrate(args: argparse.Namespace) -> int:
    from ops.migrate import ensure_database, migrate

    url = Env().required("DATABASE_URL")
    if args.create:
        asyncio.run(ensure_database(url))
    applied = asyncio.run(migrate(url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _keys(args: argparse.Namespace) -> int:
    from common.auth.signing_keys import ensure_keys, rotate_keys

    env = Env()
    private = Path(args.private_key or env.required("SIGNING_KEY_FILE"))
    jwks = Path(args.jwks or env.required("JWKS_FILE"))
    kid = rotate_keys(private, jwks) if args.action == "rotate" else ensure_keys(private, jwks)
    print(f"signing key id: {kid}")
    if args.action == "rotate":
        print(
            "auth_service signs with the new key once it has been published for "
            "SCOREBOARD_KEY_ACTIVATION_SECONDS (no restart); verifiers accept both keys "
            "until the next rotation drops the old one"
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ops.demo import run_demo

    return run_demo(args.url, players=args.players, seconds=args.seconds)


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
    demo = sub.add_parser("demo", help="seed players and simulate activity (make demo)")
    demo.add_argument("--url", help="a running edge (default: SCOREBOARD_EDGE_HOST/_PORT)")
    demo.add_argument("--players", type=int, default=12, help="1-100 (default 12)")
    demo.add_argument("--seconds", type=float, default=120, help="0-3600; 0 seeds only")
    demo.set_defaults(handler=_demo)
    admin.register(sub)
    anomalies.register(sub)
    boards.register(sub)
    ranking.add_parser(sub)
    actions.register(sub)
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
