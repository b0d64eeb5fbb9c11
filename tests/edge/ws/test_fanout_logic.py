"""Pure logic of the edge's fan-out, with fake sockets and a fake clock."""

from __future__ import annotations

import asyncio

from edge.config import WebSocketSettings
from edge.fanout import CLOSE_TOKEN_EXPIRED, CLOSE_TOO_SLOW, FanOut, Frame, Viewer


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.full = False
        self.closed: int | None = None

    def write_frame(self, frame: bytes) -> bool:
        if self.full or self.closed is not None:
            return False
        self.frames.append(frame)
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed = code

    def park(self, handler: object, high_water: int, send_buffer: int | None = None) -> None:
        raise AssertionError("not used")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _frame(seq: int) -> Frame:
    return Frame(seq, f"s{seq}".encode())


async def _run_timers() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_first_change_goes_at_once_then_one_per_tick() -> None:
    clock = Clock()
    fanout = FanOut(WebSocketSettings(tick_seconds=3600), clock=clock)
    sock = FakeSocket()
    assert fanout.reserve("u") is None
    fanout.add(Viewer(sock, key="u", expires_at=None))
    fanout.publish(_frame(1))
    await _run_timers()
    assert sock.frames == [b"s1"]  # at once: nothing was sent in the last tick
    fanout.publish(_frame(2))
    fanout.publish(_frame(3))
    await _run_timers()
    assert sock.frames == [b"s1"]  # throttled: the next tick is an hour away
    fanout.publish(_frame(2))  # older than the newest: ignored
    assert fanout.latest == _frame(3)


class SlowSocket(FakeSocket):
    """A socket whose every write takes `cost` seconds of the fake clock."""

    def __init__(self, clock: Clock, cost: float) -> None:
        super().__init__()
        self.clock = clock
        self.cost = cost

    def write_frame(self, frame: bytes) -> bool:
        self.clock.now += self.cost
        return super().write_frame(frame)


async def test_the_tick_interval_counts_from_the_end_of_a_long_broadcast() -> None:
    # Two writes of 2,000 s: a broadcast longer than the hour-long tick. Counted from its start
    # the next tick would be due at once, broadcasts would run back to back and the loop would
    # never get to read the upstream stream in between.
    clock = Clock()
    fanout = FanOut(WebSocketSettings(tick_seconds=3600), clock=clock)
    socks = [SlowSocket(clock, 2000.0) for _ in range(2)]
    for sock in socks:
        fanout.reserve(None)
        fanout.add(Viewer(sock, key=None, expires_at=None))
    fanout.publish(_frame(1))
    await _run_timers()
    assert [s.frames for s in socks] == [[b"s1"], [b"s1"]]
    fanout.publish(_frame(2))
    await _run_timers()
    assert [s.frames for s in socks] == [[b"s1"], [b"s1"]]  # an hour after the broadcast ended


async def test_joining_viewer_gets_the_newest_at_once() -> None:
    fanout = FanOut(WebSocketSettings())
    fanout.publish(_frame(7))
    sock = FakeSocket()
    fanout.reserve(None)
    fanout.add(Viewer(sock, key=None, expires_at=None))
    assert sock.frames == [b"s7"]


async def test_a_tick_that_reached_nobody_does_not_throttle_the_next() -> None:
    clock = Clock()
    fanout = FanOut(WebSocketSettings(tick_seconds=3600), clock=clock)
    fanout.publish(_frame(1))  # no viewers yet
    await _run_timers()
    sock = FakeSocket()
    fanout.reserve(None)
    fanout.add(Viewer(sock, key=None, expires_at=None))
    fanout.publish(_frame(2))
    await _run_timers()
    assert sock.frames == [b"s1", b"s2"]


async def test_full_socket_is_skipped_then_caught_up_or_closed() -> None:
    clock = Clock()
    settings = WebSocketSettings(tick_seconds=0.001, slow_viewer_seconds=5.0)
    fanout = FanOut(settings, clock=clock)
    slow, fast = FakeSocket(), FakeSocket()
    for sock in (slow, fast):
        fanout.reserve(None)
        fanout.add(Viewer(sock, key=None, expires_at=None))
    slow.full = True
    fanout.publish(_frame(1))
    await _run_timers()
    assert fast.frames == [b"s1"]
    assert slow.frames == []
    fanout.publish(_frame(2))
    await asyncio.sleep(0.01)
    assert fast.frames == [b"s1", b"s2"]
    slow.full = False  # it drained: the newest only, never the skipped one
    await asyncio.sleep(0.01)
    assert slow.frames == [b"s2"]
    slow.full = True
    fanout.publish(_frame(3))
    await asyncio.sleep(0.01)
    clock.now += 6.0  # stuck for longer than slow_viewer_seconds
    await asyncio.sleep(0.01)
    assert slow.closed == CLOSE_TOO_SLOW
    assert len(fanout) == 1
    assert fast.frames[-1] == b"s3"


async def test_reservations_count_before_the_viewer_joins() -> None:
    fanout = FanOut(WebSocketSettings(max_per_user=2, max_connections=3))
    assert fanout.reserve("a") is None
    assert fanout.reserve("a") is None
    assert fanout.reserve("a") is not None  # per user
    assert fanout.reserve(None) is None
    assert fanout.reserve("b") is not None  # per process
    fanout.release("a")
    assert fanout.reserve("b") is None


async def test_expired_viewers_are_closed_in_expiry_order() -> None:
    fanout = FanOut(WebSocketSettings())
    socks = [FakeSocket() for _ in range(3)]
    for expiry, sock in zip((30.0, 10.0, 20.0), socks, strict=True):
        fanout.reserve("u")
        fanout.add(Viewer(sock, key="u", expires_at=expiry))
    assert fanout.expire(15.0) == 1
    assert [s.closed for s in socks] == [None, CLOSE_TOKEN_EXPIRED, None]
    assert b"TOKEN_EXPIRED" in socks[1].frames[-1]
    assert fanout.expire(100.0) == 2
    assert len(fanout) == 0
