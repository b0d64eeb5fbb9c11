"""A game server using Scoreboard directly over gRPC with the generated, typed stubs.

It signs in with its service account (client credentials; the scores:write scope lets it act for
any player), completes actions for a player, and prints each top-10 change from WatchTop10.

The addresses come from SCOREBOARD_AUTH_ADDR, SCOREBOARD_SCORE_ADDR and SCOREBOARD_STREAM_ADDR
(default: `make run`'s ports), the account from SCOREBOARD_CLIENT_ID (default game-server) and
SCOREBOARD_CLIENT_SECRET; each can also be given as an option. With `make run` up:
    SCOREBOARD_CLIENT_SECRET="$(cat .data/secrets/game-server-client-secret)" \\
        .venv/bin/python -m examples.game_server --user-id <a player's user id>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import TYPE_CHECKING

import grpc

from common.auth.service_token import ServiceTokenSource
from common.config import ClientCredentials, Endpoints, Env
from common.errors import from_rpc_error
from common.grpc_client import call_metadata, open_channel
from scoreboard.auth.v1 import auth_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc
from scoreboard.stream.v1 import stream_service_pb2, stream_service_pb2_grpc

if TYPE_CHECKING:
    from scoreboard.score.v1.score_service_pb2_grpc import ScoreServiceAsyncStub
    from scoreboard.stream.v1.stream_service_pb2_grpc import StreamServiceAsyncStub


async def watch(stream: StreamServiceAsyncStub, tokens: ServiceTokenSource, count: int) -> None:
    call = stream.WatchTop10(
        stream_service_pb2.WatchTop10Request(), metadata=call_metadata(await tokens.token())
    )
    seen = 0
    async for reply in call:
        snapshot = reply.snapshot
        leaders = ", ".join(f"#{e.rank} {e.username} {e.score}" for e in snapshot.entries[:3])
        print(f"top 10 #{snapshot.sequence}: {leaders or '(empty)'}")
        seen += 1
        if seen >= count:
            call.cancel()
            return


async def complete(
    score: ScoreServiceAsyncStub, tokens: ServiceTokenSource, user_id: str, action_id: str, key: str
) -> None:
    try:
        reply = await score.CompleteAction(
            score_service_pb2.CompleteActionRequest(
                action_id=action_id, user_id=user_id, idempotency_key=key
            ),
            metadata=call_metadata(await tokens.token()),
            timeout=5,
        )
    except grpc.aio.AioRpcError as exc:
        error = from_rpc_error(exc)
        print(f"{action_id}: refused ({error.reason}): {error.message}")
        return
    print(f"{action_id}: +{reply.increment} -> {reply.new_score} (rank {reply.rank})")


async def main() -> None:
    env = Env()
    endpoints = Endpoints.from_env(env)
    secret = env.raw("CLIENT_SECRET")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auth", default=endpoints.auth)
    parser.add_argument("--score", default=endpoints.score)
    parser.add_argument("--stream", default=endpoints.stream)
    parser.add_argument("--client-id", default=env.text("CLIENT_ID", "game-server"))
    parser.add_argument(
        "--client-secret",
        default=secret,
        required=secret is None,
        help="or SCOREBOARD_CLIENT_SECRET",
    )
    parser.add_argument("--user-id", required=True, help="the player the actions are for")
    parser.add_argument("--actions", default="daily-login,win-match")
    args = parser.parse_args()

    channels = [open_channel(a) for a in (args.auth, args.score, args.stream)]
    auth = auth_service_pb2_grpc.AuthServiceStub(channels[0])
    score = score_service_pb2_grpc.ScoreServiceStub(channels[1])
    stream = stream_service_pb2_grpc.StreamServiceStub(channels[2])
    tokens = ServiceTokenSource(auth, ClientCredentials(args.client_id, args.client_secret))
    try:
        watcher = asyncio.create_task(watch(stream, tokens, count=3))
        for index, action_id in enumerate(args.actions.split(",")):
            await complete(score, tokens, args.user_id, action_id, f"example-{action_id}-{index}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher, 5)
    finally:
        for channel in channels:
            await channel.close()


if __name__ == "__main__":
    asyncio.run(main())
