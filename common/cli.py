"""The `scoreboard` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common import cli_actions, cli_admin, cli_ranking
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
            "auth_service signs with the new key once it has been published for "
            "SCOREBOARD_KEY_ACTIVATION_SECONDS (no restart); verifiers accept both keys "
            "until the next rotation drops the old one"
        )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bench.harness import BenchConfig, run

    config = BenchConfig(
        users=args.users,
        seconds=args.seconds,
        grpc_rate=args.grpc_rate,
        rest_rate=args.rest_rate,
        read_rate=args.read_rate,
        rest_users=args.rest_users,
        phases=tuple(args.phases.split(",")),
        viewers=tuple(args.viewers),
        viewer_write_rate=args.viewer_write_rate,
        use_running=not args.own_stack,
        out_dir=Path(args.out_dir).resolve(),
        data_dir=Path(Env().text("DATA_DIR", ".data")).resolve(),
    )
    report = run(config)
    return 0 if report["checks"]["nothing_lost"] else 1


def _demo(args: argparse.Namespace) -> int:
    from common.demo import run_demo

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
    bench = sub.add_parser(
        "bench", help="measure throughput and latency against a running stack (or start one)"
    )
    bench.add_argument("--users", type=int, default=1_000_000, help="population size")
    bench.add_argument("--seconds", type=float, default=60.0, help="length of each write phase")
    bench.add_argument("--grpc-rate", type=float, default=2000.0, help="gRPC actions/s offered")
    bench.add_argument("--rest-rate", type=float, default=1200.0, help="REST actions/s offered")
    bench.add_argument("--read-rate", type=float, default=5000.0, help="leaderboard GETs/s offered")
    bench.add_argument("--rest-users", type=int, default=1000, help="players for REST writes")
    bench.add_argument(
        "--phases",
        default="grpc-uniform,grpc-skewed,rest,reads,viewers",
        help="comma-separated: grpc-uniform, grpc-skewed, rest, reads, viewers",
    )
    bench.add_argument(
        "--viewers",
        type=int,
        nargs="+",
        default=[1000, 5000, 10000],
        help="WebSocket viewer counts of the viewers phase (one run each)",
    )
    bench.add_argument(
        "--viewer-write-rate",
        type=float,
        default=1000.0,
        help="skewed gRPC actions/s offered while viewers watch",
    )
    bench.add_argument(
        "--out-dir",
        default=".bench",
        help="where the JSON results (and an own stack's data) go (default .bench)",
    )
    bench.add_argument(
        "--own-stack",
        action="store_true",
        help="start a stack for the run even if `make run` is up",
    )
    bench.set_defaults(handler=_bench)
    demo = sub.add_parser("demo", help="seed players and simulate activity (make demo)")
    demo.add_argument("--url", help="a running edge (default: SCOREBOARD_EDGE_HOST/_PORT)")
    demo.add_argument("--players", type=int, default=12, help="1-100 (default 12)")
    demo.add_argument("--seconds", type=float, default=120, help="0-3600; 0 seeds only")
    demo.set_defaults(handler=_demo)
    cli_admin.register(sub)
    cli_ranking.add_parser(sub)
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
