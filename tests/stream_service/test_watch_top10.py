"""StreamService.WatchTop10 over real gRPC streams: authorization, the snapshot at once, order,
conflation for slow watchers, Redis dropping, shutdown and keepalive."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import pytest

from common.config import GrpcServerSettings
from common.grpc_client import call_metadata
from scoreboard.stream.v1 import stream_service_pb2, stream_service_pb2_grpc
from stream_service.hub import SnapshotHub
from tests.conftest import StackFactory
from tests.stream_service.watcher import Watcher
from tests.support.redis_process import redis_process
from tests.support.servers import redis_client, wait_for
from tests.support.stack import Stack
from tests.support.tokens import game_token, register, service_account
from tests.support.top10 import entries, publish, settled


def _strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


async def test_service_token_gets_snapshot_at_once_then_every_change_in_order(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(with_edge=False) as stack:
        await settled(stack)
        first = await publish(stack.redis, stack, entries(50, 40, 30))
        watcher = Watcher(stack.address("stream"), await game_token(stack))
        try:
            await watcher.wait_for(first)
            assert watcher.sequences[0] >= first  # the current snapshot, without any change
            published = [
                await publish(stack.redis, stack, entries(50 + i, 40, 30)) for i in range(1, 6)
            ]
            await watcher.wait_for(published[-1])
            assert _strictly_increasing(watcher.sequences)
            last = watcher.snapshots[-1]
            assert last.sequence == published[-1]
            assert [(e.rank, e.score) for e in last.entries] == [(1, 55), (2, 40), (3, 30)]
            assert last.commit_time.seconds > 0
            assert last.board_id == "default"
        finally:
            await watcher.close()


async def test_user_token_may_watch_and_service_needs_the_scope(shared_stack: Stack) -> None:
    _, user_token = await register(shared_stack)
    watcher = Watcher(shared_stack.address("stream"), user_token)
    try:
        seq = await publish(shared_stack.redis, shared_stack, entries(7))
        await watcher.wait_for(seq)
    finally:
        await watcher.close()

    no_scope = await service_account(shared_stack, "reader-only", ("leaderboard:read",))
    refused = Watcher(shared_stack.address("stream"), no_scope)
    await asyncio.wait_for(refused.ended.wait(), 10)
    assert refused.error is not None
    assert refused.error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.sequences == []
    await refused.close()

    anonymous = Watcher(shared_stack.address("stream"), "")
    await asyncio.wait_for(anonymous.ended.wait(), 10)
    assert anonymous.error is not None
    assert anonymous.error.code() == grpc.StatusCode.UNAUTHENTICATED
    await anonymous.close()


async def test_unknown_board_is_not_found(shared_stack: Stack) -> None:
    async with grpc.aio.insecure_channel(shared_stack.address("stream")) as channel:
        call = stream_service_pb2_grpc.StreamServiceStub(channel).WatchTop10(
            stream_service_pb2.WatchTop10Request(board_id="nope"),
            metadata=call_metadata(await game_token(shared_stack)),
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in call:
                pass
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_slow_watcher_does_not_slow_others_and_never_goes_back(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(with_edge=False) as stack:
        await settled(stack)
        token = await game_token(stack)
        first = await publish(stack.redis, stack, entries(1))
        slow = Watcher(stack.address("stream"), token, reading=False)
        fast = Watcher(stack.address("stream"), token)
        try:
            await fast.wait_for(first)
            # Large snapshots: megabytes the slow watcher does not read.
            last = first
            for i in range(150):
                last = await publish(
                    stack.redis, stack, entries(1000 + i, *range(9), name_size=900)
                )
            await fast.wait_for(last)  # while the slow one reads nothing at all
            assert _strictly_increasing(fast.sequences)
            slow.start_reading()
            await slow.wait_for(last)
            assert _strictly_increasing(slow.sequences)
            assert slow.sequences[-1] == last
        finally:
            await slow.close()
            await fast.close()


async def test_shutdown_ends_streams_cleanly_and_refuses_new_watchers(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(with_edge=False) as stack:
        await settled(stack)
        token = await game_token(stack)
        seq = await publish(stack.redis, stack, entries(3))
        watcher = Watcher(stack.address("stream"), token)
        await watcher.wait_for(seq)
        stopping = asyncio.create_task(stack.stop_service("stream", grace=5.0))
        await asyncio.wait_for(watcher.ended.wait(), 10)
        assert watcher.error is None  # ended with OK, not cancelled by the server stopping
        await stopping
        await watcher.close()
        await stack.start_service("stream")
        again = Watcher(stack.address("stream"), token)
        try:
            await again.wait_for(seq)  # the restarted service serves the stored snapshot
        finally:
            await again.close()


async def test_redis_restart_under_stream_service(stack_factory: StackFactory) -> None:
    """A private Redis, stopped and started again on the same port (data kept on disk): the hub
    resubscribes, and changes after the restart reach the watchers on their open streams."""
    with redis_process(persistent=True) as server:
        async with stack_factory(redis_url=server.url, with_edge=False) as stack:
            await settled(stack)
            hub = _hub(stack)
            before = hub.subscriptions
            seq = await publish(stack.redis, stack, entries(10))
            watcher = Watcher(stack.address("stream"), await game_token(stack))
            try:
                await watcher.wait_for(seq)
                server.stop()
                server.start()
                await wait_for(lambda: _resubscribed(stack, before), timeout=30)
                async with redis_client(server.url) as redis:  # the test's own pool died with it
                    after = await publish(redis, stack, entries(11))
                await watcher.wait_for(after)
                assert watcher.error is None
                assert _strictly_increasing(watcher.sequences)
            finally:
                await watcher.close()


async def test_change_missed_while_unsubscribed_is_read_back(stack_factory: StackFactory) -> None:
    """The subscription's connection is killed and a change is stored without reaching it (as if
    published while it was down): on resubscribing, the hub re-reads the stored snapshot, so the
    change is not missed for good. (Private Redis: CLIENT KILL must not touch anyone else.)"""
    with redis_process(persistent=True) as server:
        async with stack_factory(redis_url=server.url, with_edge=False) as stack:
            await settled(stack)
            hub = _hub(stack)
            seq = await publish(stack.redis, stack, entries(20))
            watcher = Watcher(stack.address("stream"), await game_token(stack))
            try:
                await watcher.wait_for(seq)
                before = hub.subscriptions
                missed = await publish(stack.redis, stack, entries(21), announce=False)
                killed = await stack.redis.client_kill_filter(_type="pubsub")
                assert killed >= 1
                await watcher.wait_for(missed)
                assert hub.subscriptions > before
                assert watcher.snapshots[-1].entries[0].score == 21
            finally:
                await watcher.close()


async def test_idle_stream_survives_keepalive_pings(stack_factory: StackFactory) -> None:
    """Scaled down: a client pinging every 0.3 s on an idle stream, a server accepting pings
    every 0.1 s. With gRPC's default floor (5 min) the server would answer GOAWAY too_many_pings
    after two pings; here the stream stays open through ~15 idle pings and delivers the next
    change."""
    grpc_settings = GrpcServerSettings(
        keepalive_seconds=0.5, keepalive_timeout_seconds=2.0, min_client_ping_seconds=0.1
    )
    async with stack_factory(stream={"grpc": grpc_settings}, with_edge=False) as stack:
        await settled(stack)
        seq = await publish(stack.redis, stack, entries(30))
        channel = grpc.aio.insecure_channel(
            stack.address("stream"),
            options=[
                ("grpc.keepalive_time_ms", 300),
                ("grpc.keepalive_timeout_ms", 2000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
            ],
        )
        call = stream_service_pb2_grpc.StreamServiceStub(channel).WatchTop10(
            stream_service_pb2.WatchTop10Request(),
            metadata=call_metadata(await game_token(stack)),
        )
        try:
            first = await asyncio.wait_for(call.read(), 10)
            assert isinstance(first, stream_service_pb2.WatchTop10Response)
            assert first.snapshot.sequence == seq
            await asyncio.sleep(5)  # idle: only keepalive pings cross the connection
            later = await publish(stack.redis, stack, entries(31))
            reply = await asyncio.wait_for(call.read(), 10)
            assert isinstance(reply, stream_service_pb2.WatchTop10Response)
            assert reply.snapshot.sequence == later
        finally:
            call.cancel()
            await channel.close()


def _hub(stack: Stack) -> SnapshotHub:
    hub = stack.services["stream"].running.parts["hubs"]["default"]
    assert isinstance(hub, SnapshotHub)
    return hub


async def _resubscribed(stack: Stack, before: int) -> bool:
    hub = _hub(stack)
    return hub.subscribed.is_set() and hub.subscriptions > before
