"""A game server using Scoreboard directly over gRPC with the generated, typed stubs.

It signs in with its service account (client credentials; the scores:write scope lets it act for
any player), completes actions for players, and prints each top-10 change from WatchTop10.

With `make run` up:
    .venv/bin/python -m examples.game_server \\
        --client-secret "$(cat .data/secrets/game-server-client-secret)" \\
        --player-token <a player's access token, to find their user id>   # or --user-id
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import TYPE_CHECKING

import grpc

from common.auth.service_token import ServiceTokenSource
from common.config import ClientCredentials
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auth", default="127.0.0.1:50051")
    parser.add_argument("--score", default="127.0.0.1:50052")
    parser.add_argument("--stream", default="127.0.0.1:50054")
    parser.add_argument("--client-id", default="game-server")
    parser.add_argument("--client-secret", required=True)
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
