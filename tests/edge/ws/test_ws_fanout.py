"""/ws fan-out through the real path, with real WebSockets: every viewer gets every change in
order (or a later one that supersedes it), slow viewers are skipped and closed without holding
anyone back, limits, heartbeats, restarts upstream and a graceful shutdown."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import grpc

from common.config import GrpcServerSettings
from common.redis_values import SEQ_FIELD, decode_top10
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc
from tests.conftest import StackFactory
from tests.edge.ws.raw_socket import RawSocket, close_code
from tests.support.clients import Viewer, metadata
from tests.support.servers import wait_for
from tests.support.stack import Stack, edge_state
from tests.support.tokens import admin_token, game_token, register
from tests.support.top10 import entries, publish, settled


async def _bump_action(stack: Stack, action_id: str = "live-bump") -> str:
    """A one-point action without daily limit or cooldown, to drive top-10 changes."""
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        await score_service_pb2_grpc.ScoreServiceStub(channel).CreateAction(
            score_service_pb2.CreateActionRequest(
                action=score_service_pb2.Action(
                    action_id=action_id,
                    name="Bump",
                    description="one point",
                    base_points=1,
                    difficulty_multiplier=1.0,
                    daily_limit=100_000,
                    active=True,
                )
            ),
            metadata=metadata(await admin_token(stack)),
        )
    return action_id


async def _complete(stack: Stack, token: str, user_id: str, action_id: str) -> None:
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        await score_service_pb2_grpc.ScoreServiceStub(channel).CompleteAction(
            score_service_pb2.CompleteActionRequest(action_id=action_id, user_id=user_id),
            metadata=metadata(token),
        )


def _sequences(viewer: Viewer) -> list[int]:
    return [int(u["sequence"]) for u in viewer.updates()]


def _increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


async def _has(viewer: Viewer, sequence: int, timeout: float = 20.0) -> None:
    await viewer.wait(
        lambda m: m["type"] == "LEADERBOARD_UPDATE" and m["data"]["sequence"] >= sequence,
        timeout=timeout,
    )


async def _edge_has(stack: Stack, sequence: int) -> None:
    async def arrived() -> bool:
        latest = edge_state(stack).live.latest
        return latest is not None and latest.sequence >= sequence

    await wait_for(arrived, timeout=20)


async def _stored_sequence(stack: Stack) -> int:
    seq = await stack.redis.hget(stack.keys.board("default").meta, SEQ_FIELD)
    assert seq is not None
    return int(seq)


async def test_200_viewers_each_get_every_committed_change_in_order(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        action = await _bump_action(stack)
        token = await game_token(stack)
        users = [(await register(stack))[0] for _ in range(10)]
        published: dict[int, list[dict[str, Any]]] = {}
        pubsub = stack.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(stack.keys.board("default").channel)

        async def record() -> None:
            async for message in pubsub.listen():
                snapshot = decode_top10(message["data"])
                published[snapshot.seq] = [
                    {"rank": e.rank, "userId": e.user_id, "username": e.username, "score": e.score}
                    for e in snapshot.entries
                ]

        recorder = asyncio.create_task(record())
        viewers = await asyncio.gather(*(Viewer.open(stack.ws_url) for _ in range(200)))
        try:
            for i in range(30):
                await _complete(stack, token, users[i % 10], action)

            async def final_published() -> int:
                for seq, top in published.items():
                    if sum(e["score"] for e in top) == 30:
                        return seq
                return 0

            final = await wait_for(final_published, timeout=30)
            for viewer in viewers:
                await _has(viewer, final)
            for viewer in viewers:
                updates = viewer.updates()
                seqs = [int(u["sequence"]) for u in updates]
                assert _increasing(seqs)
                assert seqs[-1] == final
                for update in updates:
                    if update["sequence"] in published:  # not the board from before the run
                        assert update["top10"] == published[update["sequence"]]
                        assert update["timestamp"].endswith("Z")
            # Each viewer got at least every change after its first one, or a later one.
            assert max(published) == final
        finally:
            recorder.cancel()
            await asyncio.gather(*(v.close() for v in viewers))
            await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_viewer_that_stops_reading_delays_nobody_and_stays_bounded(
    stack_factory: StackFactory,
) -> None:
    limit = 4096
    websocket = {
        "allow_anonymous": True,
        "tick_seconds": 0.01,
        "slow_viewer_bytes": limit,
        "slow_viewer_seconds": 1.0,
        "send_buffer_bytes": 4096,
    }
    async with stack_factory(websocket=websocket) as stack:
        await settled(stack)
        await _edge_has(stack, await _stored_sequence(stack))
        fanout = edge_state(stack).fanout
        stuck = await RawSocket.open(stack.ws_url, receive_buffer=4096)  # never reads
        reader = await Viewer.open(stack.ws_url)
        await wait_for(lambda: _count(stack, 2))
        sockets = [v.socket for v in fanout._viewers]
        largest_frame = 0
        most_unsent = 0
        last = 0
        try:
            for i in range(120):
                last = await publish(stack.redis, stack, entries(500 + i, *range(9), name_size=900))
                await _has(reader, last)  # the reader is never held back by the stuck one
                frame = edge_state(stack).fanout.latest
                assert frame is not None
                largest_frame = max(largest_frame, len(frame.frame))
                for sock in sockets:
                    most_unsent = max(most_unsent, sock.transport.get_write_buffer_size())  # type: ignore[attr-defined]
            assert _increasing(_sequences(reader))
            # The stuck viewer's unsent bytes never exceed the limit plus one frame...
            assert most_unsent > limit  # (it really was stuck)
            assert most_unsent <= limit + largest_frame
            # ...and it is closed once stuck for longer than slow_viewer_seconds.
            await wait_for(lambda: _count(stack, 1), timeout=20)
            assert reader.connection.close_code is None
            last = await publish(stack.redis, stack, entries(1))
            await _has(reader, last)
        finally:
            stuck.close()
            await reader.close()


async def _count(stack: Stack, expected: int) -> bool:
    return len(edge_state(stack).fanout) == expected


async def test_viewers_get_the_current_board_after_stream_service_restarts(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        action = await _bump_action(stack)
        user, token = await register(stack)
        viewers = [await Viewer.open(stack.ws_url) for _ in range(5)]
        try:
            for viewer in viewers:
                await viewer.wait(lambda m: m["type"] == "LEADERBOARD_UPDATE")
            await stack.stop_service("stream")
            await _complete(stack, token, user, action)  # committed while stream_service is down
            changed = await wait_for(lambda: _stored_sequence(stack))
            await stack.start_service("stream")
            for viewer in viewers:
                await _has(viewer, changed, timeout=30)
                # The change committed while stream_service was down reaches every viewer (it
                # may be applied after the sequence read above).
                await viewer.wait(
                    lambda m: (
                        m["type"] == "LEADERBOARD_UPDATE"
                        and any(e["userId"] == user and e["score"] == 1 for e in m["data"]["top10"])
                    ),
                    timeout=30,
                )
                assert viewer.connection.close_code is None  # stayed connected throughout
                assert _increasing(_sequences(viewer))
        finally:
            for viewer in viewers:
                await viewer.close()


async def test_upstream_stream_recycled_by_max_connection_age_loses_nothing(
    stack_factory: StackFactory,
) -> None:
    grpc = GrpcServerSettings(max_connection_age_seconds=1, max_connection_age_grace_seconds=0)
    async with stack_factory(stream={"grpc": grpc}, websocket={"allow_anonymous": True}) as stack:
        await settled(stack)
        viewer = await Viewer.open(stack.ws_url)
        live = edge_state(stack).live
        opened = live.streams_opened
        sent = []
        try:
            deadline = time.monotonic() + 4
            i = 0
            while time.monotonic() < deadline or live.streams_opened <= opened:
                sent.append(await publish(stack.redis, stack, entries(100 + i)))
                await _has(viewer, sent[-1])
                i += 1
                await asyncio.sleep(0.2)
            assert live.streams_opened > opened  # the stream was recycled at least once
            got = _sequences(viewer)
            assert _increasing(got)
            assert got[-1] == sent[-1]
        finally:
            await viewer.close()


async def test_a_burst_gets_at_most_one_message_per_tick(stack_factory: StackFactory) -> None:
    async with stack_factory(websocket={"allow_anonymous": True, "tick_seconds": 1.0}) as stack:
        await settled(stack)
        await _edge_has(stack, await _stored_sequence(stack))
        viewer = await Viewer.open(stack.ws_url)
        await viewer.wait(lambda m: m["type"] == "LEADERBOARD_UPDATE")
        before = len(viewer.updates())
        try:
            started = time.monotonic()
            last = 0
            for i in range(40):
                last = await publish(stack.redis, stack, entries(200 + i))
            await _has(viewer, last)
            elapsed = time.monotonic() - started
            got = _sequences(viewer)[before:]
            assert _increasing(got)
            assert got[-1] == last
            # One message at once, then at most one per (1 s) tick while the burst lasted.
            assert len(got) <= 2 + int(elapsed / 1.0)
            assert len(got) < 40
        finally:
            await viewer.close()


async def test_first_change_after_a_quiet_tick_goes_out_at_once(
    stack_factory: StackFactory,
) -> None:
    """With a one-hour tick: a change after a quiet period reaches the viewer (it would wait an
    hour if the throttle delayed it); the next one is held for the tick, so a viewer who joins
    meanwhile sees it first, while the first viewer is still on the earlier one."""
    async with stack_factory(websocket={"allow_anonymous": True, "tick_seconds": 3600}) as stack:
        await settled(stack)
        await _edge_has(stack, await _stored_sequence(stack))
        first = await Viewer.open(stack.ws_url)
        await first.wait(lambda m: m["type"] == "LEADERBOARD_UPDATE")
        second: Viewer | None = None
        try:
            one = await publish(stack.redis, stack, entries(300))
            await _has(first, one)
            two = await publish(stack.redis, stack, entries(301))
            await _edge_has(stack, two)
            second = await Viewer.open(stack.ws_url)
            await _has(second, two)  # a joining viewer gets the newest board at once
            assert _sequences(first)[-1] == one  # held back by the throttle
        finally:
            await first.close()
            if second is not None:
                await second.close()


async def test_connection_limits_per_user_and_per_process(stack_factory: StackFactory) -> None:
    async with stack_factory(websocket={"max_per_user": 2, "max_connections": 4}) as stack:
        _, alice = await register(stack)
        _, bob = await register(stack)
        _, carol = await register(stack)
        # Concurrent handshakes of one user cannot overshoot the limit.
        opened = await asyncio.gather(
            *(Viewer.open(f"{stack.ws_url}?token={alice}") for _ in range(5))
        )
        await asyncio.gather(*(v.wait(lambda m: True) for v in opened))
        accepted = [v for v in opened if v.messages[0]["type"] == "CONNECTION_ACK"]
        refused = [v for v in opened if v.messages[0]["type"] == "ERROR"]
        assert len(accepted) == 2
        for viewer in refused:
            await asyncio.wait_for(viewer._task, 10)
            assert viewer.connection.close_code == 4429
            assert viewer.messages[0]["data"]["code"] == "CONNECTION_LIMIT"
        bobs = [await Viewer.open(f"{stack.ws_url}?token={bob}") for _ in range(2)]
        for viewer in bobs:
            assert (await viewer.wait(lambda m: True))["type"] == "CONNECTION_ACK"
        # The process holds 4: carol is refused although she has none.
        full = await Viewer.open(f"{stack.ws_url}?token={carol}")
        await asyncio.wait_for(full._task, 10)
        assert full.connection.close_code == 4429
        # A viewer leaving frees its place.
        await bobs[0].close()
        await wait_for(lambda: _count(stack, 3))
        again = await Viewer.open(f"{stack.ws_url}?token={carol}")
        assert (await again.wait(lambda m: True))["type"] == "CONNECTION_ACK"
        for viewer in [*accepted, bobs[1], again]:
            await viewer.close()


async def test_messages_ping_unknown_too_big_and_too_many(stack_factory: StackFactory) -> None:
    websocket = {"allow_anonymous": True, "max_message_bytes": 256, "messages_per_second": 1.0}
    async with stack_factory(websocket=websocket) as stack:
        viewer = await Viewer.open(stack.ws_url)
        await viewer.wait(lambda m: m["type"] == "CONNECTION_ACK")
        await viewer.connection.send('{"type": "PING"}')
        await viewer.wait(lambda m: m["type"] == "PONG")
        await viewer.connection.send('{"type": "HELLO"}')  # (SUBSCRIBE is known: boards)
        error = await viewer.wait(lambda m: m["type"] == "ERROR")
        assert error["data"]["code"] == "UNKNOWN_MESSAGE"
        # Burst of 5, then one a second: the sixth message in a row closes the connection.
        for _ in range(6):
            await viewer.connection.send('{"type": "PING"}')
        await asyncio.wait_for(viewer._task, 10)
        assert viewer.connection.close_code == 4429
        assert viewer.messages[-1]["data"]["code"] == "RATE_LIMITED"
        assert len([m for m in viewer.messages if m["type"] == "PONG"]) <= 5

        big = await Viewer.open(stack.ws_url)
        await big.wait(lambda m: m["type"] == "CONNECTION_ACK")
        await big.connection.send('{"type": "PING", "pad": "' + "x" * 1000 + '"}')
        await asyncio.wait_for(big._task, 10)
        assert big.connection.close_code == 1009  # message too big
        await wait_for(lambda: _count(stack, 0))


async def test_heartbeat_closes_a_connection_that_does_not_answer(
    stack_factory: StackFactory,
) -> None:
    websocket = {"allow_anonymous": True, "heartbeat_seconds": 0.5}
    async with stack_factory(websocket=websocket) as stack:
        answering = await Viewer.open(stack.ws_url, ping_interval=None)  # answers pings
        silent = await RawSocket.open(stack.ws_url)  # reads, never answers
        try:
            frames = await asyncio.wait_for(silent.frames_until_closed(), 20)
            assert any(opcode == 0x9 for opcode, _ in frames)  # it was pinged
            assert close_code(frames) == 1011
            await wait_for(lambda: _count(stack, 1))
            # The one that answers is still there after several heartbeats, and still served.
            assert answering.connection.close_code is None
            seq = await publish(stack.redis, stack, entries(42))
            await _has(answering, seq)
        finally:
            silent.close()
            await answering.close()


async def test_graceful_shutdown_closes_viewers_with_1012(stack_factory: StackFactory) -> None:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        viewers = [await Viewer.open(stack.ws_url) for _ in range(3)]
        for viewer in viewers:
            await viewer.wait(lambda m: m["type"] == "CONNECTION_ACK")
        await stack.stop_edge()
        for viewer in viewers:
            await asyncio.wait_for(viewer._task, 10)
            assert viewer.connection.close_code == 1012
