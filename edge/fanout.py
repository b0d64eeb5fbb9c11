"""Fan-out of top-10 snapshots to every WebSocket viewer of this process (DESIGN decision 6).

Each snapshot is encoded once. A tick sends the newest snapshot to every viewer that has not
seen it, at most once per tick interval per viewer, whatever the upstream rate; the first change
after a quiet tick goes out at once (a throttle, not a delay). A viewer whose socket has too much
unsent data is skipped for the tick, gets the newest snapshot when it drains, and is closed if it
stays stuck: nothing is queued per viewer beyond the socket's own buffer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from edge.config import WebSocketSettings

VIEWERS = Gauge("scoreboard_ws_connections", "Open WebSocket viewers on this edge process.")
SENT = Counter("scoreboard_ws_messages_sent_total", "LEADERBOARD_UPDATE messages sent.")
SKIPPED = Counter(
    "scoreboard_ws_skipped_total", "Viewers skipped for a tick because their socket was full."
)
SLOW_CLOSED = Counter("scoreboard_ws_slow_closed_total", "Viewers closed for staying stuck.")
TICKS = Counter("scoreboard_ws_broadcast_ticks_total", "Broadcast ticks run.")
BROADCAST = Histogram(
    "scoreboard_broadcast_propagation_seconds",
    "Commit of the newest change in a snapshot to its first broadcast to this edge's viewers.",
    buckets=(0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5),
)

CLOSE_TOO_SLOW = 4409
CLOSE_TOKEN_EXPIRED = 4440


@dataclass(frozen=True)
class Frame:
    sequence: int
    frame: bytes
    text: str
    # Commit time (µs since the epoch) of the newest change in the snapshot; 0 when unknown.
    commit_us: int = 0


class Viewer:
    """One socket as the fan-out sees it."""

    __slots__ = (
        "buffered",
        "close",
        "expires_at",
        "last_sequence",
        "send",
        "stuck_since",
        "user_id",
    )

    def __init__(
        self,
        *,
        user_id: str | None,
        expires_at: float | None,
        send: Callable[[Frame], bool],
        buffered: Callable[[], int],
        close: Callable[[int, str], None],
    ) -> None:
        self.user_id = user_id
        self.expires_at = expires_at
        self.send = send
        self.buffered = buffered
        self.close = close
        self.last_sequence = -1
        self.stuck_since: float | None = None


class FanOut:
    def __init__(
        self, settings: WebSocketSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._viewers: set[Viewer] = set()
        self._behind: set[Viewer] = set()
        self._per_user: dict[str, int] = {}
        self._latest: Frame | None = None
        self._last_tick = -1e9
        self._timer: asyncio.Handle | None = None
        self._fresh = False

    @property
    def latest(self) -> Frame | None:
        return self._latest

    def __len__(self) -> int:
        return len(self._viewers)

    def admit(self, user_id: str | None) -> str | None:
        """None when another viewer may join, else why not."""
        if len(self._viewers) >= self._settings.max_connections:
            return "this server has reached its connection limit"
        if user_id is not None and self._per_user.get(user_id, 0) >= self._settings.max_per_user:
            return f"at most {self._settings.max_per_user} connections per user"
        return None

    def add(self, viewer: Viewer) -> None:
        """Register a viewer and send it the current snapshot at once."""
        self._viewers.add(viewer)
        VIEWERS.set(len(self._viewers))
        if viewer.user_id is not None:
            self._per_user[viewer.user_id] = self._per_user.get(viewer.user_id, 0) + 1
        latest = self._latest
        if latest is not None and viewer.send(latest):
            viewer.last_sequence = latest.sequence
            SENT.inc()

    def remove(self, viewer: Viewer) -> None:
        if viewer not in self._viewers:
            return
        self._viewers.discard(viewer)
        self._behind.discard(viewer)
        VIEWERS.set(len(self._viewers))
        if viewer.user_id is not None:
            left = self._per_user.get(viewer.user_id, 1) - 1
            if left:
                self._per_user[viewer.user_id] = left
            else:
                self._per_user.pop(viewer.user_id, None)

    def publish(self, frame: Frame) -> None:
        if self._latest is not None and frame.sequence <= self._latest.sequence:
            return
        self._latest = frame
        self._fresh = True
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        delay = self._last_tick + self._settings.tick_seconds - self._clock()
        loop = asyncio.get_running_loop()
        self._timer = (
            loop.call_later(delay, self._tick) if delay > 0 else loop.call_soon(self._tick)
        )

    def _tick(self) -> None:
        self._timer = None
        latest = self._latest
        if latest is None:
            return
        now = self._clock()
        self._last_tick = now
        TICKS.inc()
        targets = self._viewers if self._fresh else self._behind
        if self._fresh and latest.commit_us and self._viewers:
            BROADCAST.observe(max(0.0, time.time() - latest.commit_us / 1e6))
        self._fresh = False
        behind: set[Viewer] = set()
        limit = self._settings.slow_viewer_bytes
        sequence = latest.sequence
        sent = 0
        for viewer in list(targets):
            if viewer.last_sequence >= sequence:
                continue
            if viewer.buffered() > limit:
                if viewer.stuck_since is None:
                    viewer.stuck_since = now
                elif now - viewer.stuck_since > self._settings.slow_viewer_seconds:
                    SLOW_CLOSED.inc()
                    self.remove(viewer)
                    viewer.close(CLOSE_TOO_SLOW, "too slow to keep up")
                    continue
                SKIPPED.inc()
                behind.add(viewer)
                continue
            viewer.stuck_since = None
            if viewer.send(latest):
                viewer.last_sequence = sequence
                sent += 1
        SENT.inc(sent)
        self._behind = behind
        if behind:
            self._schedule()

    def expire(self, now_wall: float) -> None:
        """Close viewers whose token has expired (they reconnect with a fresh one)."""
        for viewer in list(self._viewers):
            if viewer.expires_at is not None and viewer.expires_at <= now_wall:
                self.remove(viewer)
                viewer.close(CLOSE_TOKEN_EXPIRED, "token expired")

    def close_all(self, code: int, reason: str) -> None:
        for viewer in list(self._viewers):
            self.remove(viewer)
            viewer.close(code, reason)
