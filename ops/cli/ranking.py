"""`scoreboard ranking rebuild|reconcile [--repair]`: the ranking's admin RPCs, called with an
admin service account's client credentials (SCOREBOARD_CLIENT_ID / SCOREBOARD_CLIENT_SECRET,
SCOREBOARD_AUTH_ADDR, SCOREBOARD_LEADERBOARD_ADDR).

Exit status: 0 done (reconcile: no drift, or drift repaired), 1 reconcile found drift and did
not repair it, 2 configuration error, 3 the call failed (refused, unreachable)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

EXIT_DRIFT = 1
EXIT_FAILED = 3


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "ranking",
        help="rebuild the Redis ranking from PostgreSQL, or compare them (admin)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["rebuild", "reconcile"])
    parser.add_argument(
        "--repair", action="store_true", help="reconcile: rebuild when any drift is found"
    )
    parser.add_argument("--board", default="", help="board id (default: the default board)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the answer"
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from common.config import ClientCredentials, Endpoints, Env

    if args.repair and args.action != "reconcile":
        print("--repair only applies to reconcile", file=sys.stderr)
        return 2
    env = Env()
    credentials = ClientCredentials.from_env(env)
    endpoints = Endpoints.from_env(env)
    return asyncio.run(_call(args, credentials, endpoints))


async def _call(args: argparse.Namespace, credentials: Any, endpoints: Any) -> int:
    import grpc

    from common.auth.service_token import ServiceTokenSource
    from common.errors import ServiceError, from_rpc_error
    from common.grpc_client import call_metadata, open_channel
    from scoreboard.auth.v1 import auth_service_pb2_grpc
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc

    auth = open_channel(endpoints.auth)
    ranking = open_channel(endpoints.leaderboard)
    try:
        tokens = ServiceTokenSource(auth_service_pb2_grpc.AuthServiceStub(auth), credentials)
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(ranking)
        metadata = call_metadata(await tokens.token())
        if args.action == "rebuild":
            rebuilt = await stub.RebuildRanking(
                pb.RebuildRankingRequest(board_id=args.board),
                metadata=metadata,
                timeout=args.timeout,
            )
            print(f"rebuilt: {rebuilt.users} ranked users")
            return 0
        reply = await stub.ReconcileRanking(
            pb.ReconcileRankingRequest(board_id=args.board, repair=args.repair),
            metadata=metadata,
            timeout=args.timeout,
        )
    except grpc.aio.AioRpcError as exc:
        error = from_rpc_error(exc)
        print(f"ranking {args.action} failed: {error.reason}: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    except ServiceError as error:
        print(f"ranking {args.action} failed: {error.reason}: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await auth.close()
        await ranking.close()
    print(f"users in PostgreSQL: {reply.users_in_database}")
    print(f"users in Redis: {reply.users_in_ranking}")
    print(f"mismatched: {reply.mismatched}")
    print(f"repaired: {'yes' if reply.repaired else 'no'}")
    return EXIT_DRIFT if reply.mismatched and not reply.repaired else 0
