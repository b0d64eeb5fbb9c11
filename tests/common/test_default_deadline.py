"""The default deadline (DeadlineInterceptor, SCOREBOARD_GRPC_DEFAULT_DEADLINE_SECONDS) through
real servers: a CompleteAction sent with no deadline to a score_service whose PostgreSQL link is
black-holed (connections stay open, nothing comes back, no RST) is answered within the server's
small default deadline instead of hanging; a WatchTop10 stream without a deadline is long-lived
and outlives the default of its server."""

from __future__ import annotations

import asyncio
import time

import grpc
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.faults.proxy import tcp_proxy
from common.config import GrpcServerSettings
from common.errors import ServiceError
from scoreboard.score.v1 import score_service_pb2 as pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.conftest import StackFactory
from tests.score_service.helpers import call, create_action, insert_users
from tests.stream_service.watcher import Watcher
from tests.support.clients import metadata
from tests.support.pg_proxy import score_service_on
from tests.support.tokens import game_token
from tests.support.top10 import entries, publish, settled

DEFAULT_SECONDS = 1.0
# The default plus scheduling slack: far below anything else that could end the call.
BOUND_SECONDS = DEFAULT_SECONDS + 1.5
SHORT = GrpcServerSettings(port=0, grace_seconds=1.0, default_deadline_seconds=DEFAULT_SECONDS)


def _through(database_url: str, port: int) -> str:
    return make_conninfo(
        database_url, host="127.0.0.1", port=str(port), sslmode="disable", gssencmode="disable"
    )


async def test_a_call_without_a_deadline_gets_the_default_one(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(with_edge=False) as stack:
        action = await create_action(stack, daily_limit=1000)
        first, second = await insert_users(stack.pool, 2)
        params = conninfo_to_dict(stack.config.database_url)
        async with tcp_proxy(
            str(params.get("host", "127.0.0.1")), int(str(params.get("port") or 5432))
        ) as proxy:
            url = _through(stack.config.database_url, proxy.port)
            async with (
                score_service_on(stack, url, pool_name="test-default-deadline", grpc=SHORT) as port,
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
            ):
                stub = score_service_pb2_grpc.ScoreServiceStub(channel)
                md = metadata(await game_token(stack))

                def complete(user: str) -> pb.CompleteActionRequest:
                    return pb.CompleteActionRequest(action_id=action.action_id, user_id=user)

                # Connected while the link works (the pool holds an open connection).
                await call(stub.CompleteAction(complete(first), metadata=md, timeout=10))
                proxy.black_hole()
                started = time.monotonic()
                try:
                    # No timeout: only the server's default deadline can end this call.
                    await asyncio.wait_for(
                        call(stub.CompleteAction(complete(second), metadata=md)), 30
                    )
                except ServiceError as exc:
                    refused = exc
                else:
                    raise AssertionError("completed through a black-holed PostgreSQL")
                elapsed = time.monotonic() - started
                proxy.forward()
    assert refused.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    assert int(refused.metadata["retry_after"]) >= 1
    assert DEFAULT_SECONDS * 0.9 <= elapsed < BOUND_SECONDS, elapsed


async def test_watch_top10_without_a_deadline_outlives_the_default(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(with_edge=False, stream={"grpc": SHORT}) as stack:
        await settled(stack)
        first = await publish(stack.redis, stack, entries(20, 10))
        watcher = Watcher(stack.address("stream"), await game_token(stack))
        try:
            await watcher.wait_for(first)
            await asyncio.sleep(DEFAULT_SECONDS * 2.5)
            assert not watcher.ended.is_set(), watcher.error
            later = await publish(stack.redis, stack, entries(21, 10))
            await watcher.wait_for(later)
        finally:
            await watcher.close()
