"""`python -m bench` (make bench): the capacity benchmark. See bench/harness.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.harness import DEFAULT_PHASES, BenchConfig, run
from common.config import ConfigError, Env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="measure throughput and latency against a running stack (or start one)",
    )
    parser.add_argument("--users", type=int, default=1_000_000, help="population size")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each write phase")
    parser.add_argument("--grpc-rate", type=float, default=2000.0, help="gRPC actions/s offered")
    parser.add_argument("--rest-rate", type=float, default=1200.0, help="REST actions/s offered")
    parser.add_argument(
        "--read-rate", type=float, default=5000.0, help="leaderboard GETs/s offered"
    )
    parser.add_argument("--rest-users", type=int, default=1000, help="players for REST writes")
    parser.add_argument(
        "--phases",
        default=",".join(DEFAULT_PHASES),
        help="comma-separated: idle (the stack's CPU with no load), cpu-grpc, cpu-rest (CPU "
        "per completion at a fixed rate), "
        "grpc-uniform, grpc-skewed, rest, reads, viewers, rank (personal live rank: the "
        "ticker's Redis commands and CPU, p99 from a score change to RankUpdate)",
    )
    parser.add_argument(
        "--cpu-grpc-rate",
        type=float,
        default=300.0,
        help="gRPC actions/s offered in the cpu-grpc phase (below saturation)",
    )
    parser.add_argument(
        "--cpu-rest-rate",
        type=float,
        default=150.0,
        help="REST actions/s offered in the cpu-rest phase (below saturation)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1],
        help="run the phases on a stack of N score_service replicas and N edge processes, "
        "once per N given (N > 1 always starts its own stack)",
    )
    parser.add_argument(
        "--generators",
        type=int,
        default=1,
        help="load-generator processes per phase (the offered rate is split between them)",
    )
    parser.add_argument(
        "--viewers",
        type=int,
        nargs="+",
        default=[1000, 5000, 10000],
        help="WebSocket viewer counts of the viewers phase (one run each)",
    )
    parser.add_argument(
        "--viewer-write-rate",
        type=float,
        default=1000.0,
        help="skewed gRPC actions/s offered while viewers watch",
    )
    parser.add_argument(
        "--boards",
        type=int,
        choices=(1, 2, 3),
        default=3,
        help="boards each completion counts on: default, + a weekly board, + a season board"
        " (issue 17; run with 1 to see what the others cost)",
    )
    parser.add_argument(
        "--rank-players", type=int, default=1_000_000, help="ranked players of the rank phase"
    )
    parser.add_argument(
        "--rank-subscribers",
        type=int,
        default=10_000,
        help="online rank subscribers (WatchRank) of the rank phase",
    )
    parser.add_argument(
        "--rank-write-rate",
        type=float,
        default=500.0,
        help="score changes/s applied in the rank phase",
    )
    parser.add_argument(
        "--rank-tick-seconds",
        type=float,
        default=3.0,
        help="interval of the rank ticker's passes in the rank phase",
    )
    parser.add_argument(
        "--out-dir",
        default=".bench",
        help="where the JSON results (and an own stack's data) go (default .bench)",
    )
    parser.add_argument(
        "--own-stack",
        action="store_true",
        help="start a stack for the run even if `make run` is up",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
            cpu_grpc_rate=args.cpu_grpc_rate,
            cpu_rest_rate=args.cpu_rest_rate,
            replicas=tuple(args.replicas),
            generators=max(1, args.generators),
            boards=args.boards,
            rank_players=args.rank_players,
            rank_subscribers=args.rank_subscribers,
            rank_write_rate=args.rank_write_rate,
            rank_tick_seconds=args.rank_tick_seconds,
            use_running=not args.own_stack,
            out_dir=Path(args.out_dir).resolve(),
            data_dir=Path(Env().text("DATA_DIR", ".data")).resolve(),
        )
        report = run(config)
        return 0 if report["checks"]["nothing_lost"] else 1
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
