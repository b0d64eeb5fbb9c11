"""Fan-out of top-10 snapshots to every WebSocket viewer of this process (DESIGN decision 6).

Each snapshot is encoded once. A tick writes the newest snapshot to every viewer that has not
seen it, at most once per tick interval (counted from the end of the previous broadcast),
whatever the upstream rate; the first change after a quiet tick goes out at once (a throttle,
not a delay). A viewer whose socket is full (unsent
bytes above the slow-viewer limit) is skipped for the tick, gets the newest snapshot when it
drains, and is closed (4409) if it stays stuck: nothing is queued per viewer beyond the socket's
own buffer, so a viewer costs at most the limit plus one frame however slow it is.

Admission is counted when it is decided (`reserve`), not when the socket is registered, so
concurrent handshakes cannot overshoot the per-user or per-process limits.

Viewers are indexed by the token that admitted them (its jti, login session and subject), so a
revocation (logout, ban) closes the sockets it covers at once (`revoke`, 4401 TOKEN_REVOKED).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from common.auth.revocation_mirror import Revoked
from edge.config import WebSocketSettings
from edge.ws_messages import TOKEN_EXPIRED_FRAME, TOKEN_REVOKED_FRAME
from edge.ws_protocol import FrameSocket

VIEWERS = Gauge("scoreboard_ws_connections", "Open WebSocket viewers on this edge process.")
SENT = Counter("scoreboard_ws_messages_sent_total", "LEADERBOARD_UPDATE messages sent.")
SKIPPED = Counter(
    "scoreboard_ws_skipped_total", "Viewers skipped for a tick because their socket was full."
)
SLOW_CLOSED = Counter("scoreboard_ws_slow_closed_total", "Viewers closed for staying stuck.")
EXPIRED = Counter("scoreboard_ws_expired_total", "Viewers closed because their token expired.")
REVOKED = Counter(
    "scoreboard_ws_revoked_total", "Viewers closed because their token was revoked (logout, ban)."
)
TICKS = Counter("scoreboard_ws_broadcast_ticks_total", "Broadcast ticks run.")
BROADCAST = Histogram(
    "scoreboard_broadcast_propagation_seconds",
    "Commit of the newest change in a snapshot to its first broadcast to this edge's viewers.",
    buckets=(0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5),
)

CLOSE_TOO_SLOW = 4409
CLOSE_TOKEN_EXPIRED = 4440
CLOSE_TOKEN_REVOKED = 4401


@dataclass(frozen=True)
class Grant:
    """The token a viewer was admitted with, as far as revocations can name it."""

    token_id: str = ""
    session: str = ""
    subject: str = ""
    issued_at: float = 0.0


@dataclass(frozen=True)
class Frame:
    sequence: int
    frame: bytes
    # Commit time (µs since the epoch) of the newest change in the snapshot; 0 when unknown.
    commit_us: int = 0


class Viewer:
    """One socket as the fan-out sees it. `key` is what the per-user limit counts (None for
    anonymous viewers, which only the per-process limit counts)."""

    __slots__ = ("expires_at", "grant", "key", "last_sequence", "socket", "stuck_since")

    def __init__(
        self,
        socket: FrameSocket,
        *,
        key: str | None,
        expires_at: float | None,
        grant: Grant | None = None,
    ) -> None:
        self.socket = socket
        self.key = key
        self.expires_at = expires_at
        self.grant = grant
        self.last_sequence = -1
        self.stuck_since: float | None = None


class FanOut:
    def __init__(
        self,
        settings: WebSocketSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._viewers: set[Viewer] = set()
        self._behind: list[Viewer] = []
        self._admitted = 0
        self._per_key: dict[str, int] = {}
        self._expiries: list[tuple[float, int, Viewer]] = []
        # Revocation index: jti, session and subject -> the viewers admitted with them.
        self._by_name: dict[str, set[Viewer]] = {}
        self._order = itertools.count()
        self._latest: Frame | None = None
        self._last_sent = -1e18
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._fresh = False
        # Called by close_all (shutdown): what else feeds these sockets stops too.
        self.on_close_all: list[Callable[[], None]] = []

    @property
    def settings(self) -> WebSocketSettings:
        return self._settings

    @property
    def latest(self) -> Frame | None:
        return self._latest

    def __len__(self) -> int:
        return len(self._viewers)

    # ---- admission

    def reserve(self, key: str | None) -> str | None:
        """Count a viewer about to join; None when it may, else why not (nothing counted)."""
        if self._admitted >= self._settings.max_connections:
            return "this server has reached its connection limit"
        if key is not None:
            held = self._per_key.get(key, 0)
            if held >= self._settings.max_per_user:
                return f"at most {self._settings.max_per_user} connections per user"
            self._per_key[key] = held + 1
        self._admitted += 1
        return None

    def release(self, key: str | None) -> None:
        """Give back a reservation that never became a viewer (or a viewer that left)."""
        self._admitted -= 1
        if key is not None:
            left = self._per_key.get(key, 1) - 1
            if left > 0:
                self._per_key[key] = left
            else:
                self._per_key.pop(key, None)

    def add(self, viewer: Viewer) -> None:
        """Register a reserved viewer and send it the current snapshot at once."""
        self._viewers.add(viewer)
        VIEWERS.set(len(self._viewers))
        for name in _index_names(viewer.grant):
            self._by_name.setdefault(name, set()).add(viewer)
        if viewer.expires_at is not None:
            heapq.heappush(self._expiries, (viewer.expires_at, next(self._order), viewer))
        latest = self._latest
        if latest is not None and viewer.socket.write_frame(latest.frame):
            viewer.last_sequence = latest.sequence
            SENT.inc()

    def remove(self, viewer: Viewer) -> None:
        if viewer not in self._viewers:
            return
        self._viewers.discard(viewer)
        VIEWERS.set(len(self._viewers))
        for name in _index_names(viewer.grant):
            held = self._by_name.get(name)
            if held is not None:
                held.discard(viewer)
                if not held:
                    del self._by_name[name]
        self.release(viewer.key)

    # ---- broadcasting

    def publish(self, frame: Frame) -> None:
        if self._latest is not None and frame.sequence <= self._latest.sequence:
            return
        self._latest = frame
        self._fresh = True
        self._schedule(self._last_sent + self._settings.tick_seconds)

    def _schedule(self, at: float) -> None:
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()  # a retry for stuck viewers must not hold back a fresh change
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(at - self._clock() + loop.time(), self._tick)

    def _tick(self) -> None:
        self._timer = None
        latest = self._latest
        if latest is None:
            return
        now = self._clock()
        TICKS.inc()
        fresh = self._fresh
        if fresh and latest.commit_us and self._viewers:
            BROADCAST.observe(max(0.0, time.time() - latest.commit_us / 1e6))
        self._fresh = False
        targets = tuple(self._viewers) if fresh else self._behind
        behind: list[Viewer] = []
        stuck: list[Viewer] = []
        patience = self._settings.slow_viewer_seconds
        sequence = latest.sequence
        data = latest.frame
        sent = 0
        for viewer in targets:
            if viewer.last_sequence >= sequence:
                continue
            if viewer.socket.write_frame(data):
                viewer.last_sequence = sequence
                viewer.stuck_since = None
                sent += 1
                continue
            if viewer.stuck_since is None:
                viewer.stuck_since = now
            elif now - viewer.stuck_since > patience:
                stuck.append(viewer)
                continue
            behind.append(viewer)
        SENT.inc(sent)
        SKIPPED.inc(len(behind))
        # The interval counts from the end of this broadcast: however long writing to every
        # socket took, the loop then has a tick's time to read the upstream stream (and serve
        # handshakes) before the next one. Counted from the start, broadcasts to many viewers
        # ran back to back, the upstream reader got one message in between, and a busy board
        # put the viewers seconds behind.
        done = self._clock()
        if fresh and sent:
            self._last_sent = done
        self._behind = behind
        for viewer in stuck:
            SLOW_CLOSED.inc()
            self.remove(viewer)
            viewer.socket.close(CLOSE_TOO_SLOW, "too slow to keep up")
        if behind:
            self._schedule(done + self._settings.tick_seconds)

    # ---- expiry and shutdown

    def expire(self, now_wall: float) -> int:
        """Close viewers whose token has expired (they reconnect with a fresh one)."""
        closed = 0
        heap = self._expiries
        while heap and heap[0][0] <= now_wall:
            _, _, viewer = heapq.heappop(heap)
            if viewer not in self._viewers:
                continue
            self.remove(viewer)
            viewer.socket.write_frame(TOKEN_EXPIRED_FRAME)
            viewer.socket.close(CLOSE_TOKEN_EXPIRED, "token expired")
            EXPIRED.inc()
            closed += 1
        if len(heap) > 2 * len(self._viewers) + 1024:  # viewers that left early
            self._expiries = [e for e in heap if e[2] in self._viewers]
            heapq.heapify(self._expiries)
        return closed

    def revoke(self, revoked: Revoked) -> int:
        """Close the viewers a revocation covers (the mirror calls this as it learns of one):
        those admitted with the token or the session, or with a token of the subject issued
        before the ban."""
        if revoked.token_id:
            found = self._by_name.get("t:" + revoked.token_id, ())
        elif revoked.session:
            found = self._by_name.get("s:" + revoked.session, ())
        else:
            found = {
                v
                for v in self._by_name.get("u:" + revoked.subject, ())
                if v.grant is not None and v.grant.issued_at < revoked.issued_before
            }
        closing = tuple(found)
        for viewer in closing:
            self.close_revoked(viewer)
        return len(closing)

    def close_revoked(self, viewer: Viewer) -> None:
        self.remove(viewer)
        viewer.socket.write_frame(TOKEN_REVOKED_FRAME)
        viewer.socket.close(CLOSE_TOKEN_REVOKED, "TOKEN_REVOKED")
        REVOKED.inc()

    def close_all(self, code: int, reason: str) -> None:
        for hook in self.on_close_all:
            hook()
        for viewer in tuple(self._viewers):
            self.remove(viewer)
            viewer.socket.close(code, reason)


def _index_names(grant: Grant | None) -> tuple[str, ...]:
    if grant is None:
        return ()
    names = []
    if grant.token_id:
        names.append("t:" + grant.token_id)
    if grant.session:
        names.append("s:" + grant.session)
    if grant.subject:
        names.append("u:" + grant.subject)
    return tuple(names)
