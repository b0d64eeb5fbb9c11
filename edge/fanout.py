"""Fan-out of top-10 snapshots to every WebSocket viewer of this process (DESIGN decision 6).

Viewers are grouped by the board they watch (issue 17): each board's group has its own newest
snapshot and its own tick, so a busy board never delays another. A viewer moves between groups
when it subscribes to another board, and gets that board's newest snapshot at once.

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
from common.config import DEFAULT_BOARD
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
    # The board's period: a frame of a later period is newer whatever its sequence.
    period: int = 0

    @property
    def version(self) -> tuple[int, int]:
        return (self.period, self.sequence)


class Viewer:
    """One socket as the fan-out sees it. `key` is what the per-user limit counts (None for
    anonymous viewers, which only the per-process limit counts)."""

    __slots__ = ("board", "expires_at", "grant", "key", "last_sent", "socket", "stuck_since")

    def __init__(
        self,
        socket: FrameSocket,
        *,
        key: str | None,
        expires_at: float | None,
        grant: Grant | None = None,
        board: str = DEFAULT_BOARD,
    ) -> None:
        self.socket = socket
        self.key = key
        self.expires_at = expires_at
        self.grant = grant
        self.board = board
        # The number (within its board's group) of the newest frame this viewer was sent.
        self.last_sent = -1
        self.stuck_since: float | None = None


class _Group:
    """The viewers of one board, its newest frame (numbered in publishing order) and its tick."""

    __slots__ = ("behind", "board", "fresh", "last_sent", "latest", "number", "timer", "timer_at")

    def __init__(self, board: str) -> None:
        self.board = board
        self.latest: Frame | None = None
        self.number = -1
        self.behind: list[Viewer] = []
        self.last_sent = -1e18
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.fresh = False


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
        self._groups: dict[str, _Group] = {}
        self._members: dict[str, set[Viewer]] = {}
        self._admitted = 0
        self._per_key: dict[str, int] = {}
        self._expiries: list[tuple[float, int, Viewer]] = []
        # Revocation index: jti, session and subject -> the viewers admitted with them.
        self._by_name: dict[str, set[Viewer]] = {}
        self._order = itertools.count()
        # Called by close_all (shutdown): what else feeds these sockets stops too.
        self.on_close_all: list[Callable[[], None]] = []

    @property
    def settings(self) -> WebSocketSettings:
        return self._settings

    @property
    def latest(self) -> Frame | None:
        """The default board's newest frame."""
        return self.latest_of(DEFAULT_BOARD)

    def latest_of(self, board: str) -> Frame | None:
        group = self._groups.get(board)
        return group.latest if group is not None else None

    def viewers_of(self, board: str) -> int:
        return len(self._members.get(board, ()))

    def boards(self) -> tuple[str, ...]:
        """Boards with a viewer."""
        return tuple(b for b, members in self._members.items() if members)

    def drop_board(self, board: str) -> None:
        """Forget a board nobody watches (its upstream stream was closed)."""
        if self._members.get(board):
            return
        self._members.pop(board, None)
        group = self._groups.pop(board, None)
        if group is not None and group.timer is not None:
            group.timer.cancel()

    def _group(self, board: str) -> _Group:
        group = self._groups.get(board)
        if group is None:
            group = self._groups[board] = _Group(board)
        return group

    def __len__(self) -> int:
        return len(self._viewers)

    def has(self, viewer: Viewer) -> bool:
        return viewer in self._viewers

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
        self._join(viewer)

    def _join(self, viewer: Viewer) -> None:
        """Into its board's group, with that board's newest frame at once."""
        self._members.setdefault(viewer.board, set()).add(viewer)
        group = self._group(viewer.board)
        viewer.last_sent = -1
        viewer.stuck_since = None
        latest = group.latest
        if latest is None:
            return
        if viewer.socket.write_frame(latest.frame):
            viewer.last_sent = group.number
            SENT.inc()
        elif viewer not in group.behind:
            group.behind.append(viewer)  # sent when its socket drains
            self._schedule(group, self._clock() + self._settings.tick_seconds)

    def _leave(self, viewer: Viewer) -> None:
        members = self._members.get(viewer.board)
        if members is not None:
            members.discard(viewer)

    def move(self, viewer: Viewer, board: str) -> None:
        """Let a viewer watch another board (SUBSCRIBE): it gets that board's newest frame at
        once, and no frame of the old board after this."""
        if viewer not in self._viewers or viewer.board == board:
            return
        self._leave(viewer)
        viewer.board = board
        self._join(viewer)

    def remove(self, viewer: Viewer) -> None:
        if viewer not in self._viewers:
            return
        self._viewers.discard(viewer)
        self._leave(viewer)
        VIEWERS.set(len(self._viewers))
        for name in _index_names(viewer.grant):
            held = self._by_name.get(name)
            if held is not None:
                held.discard(viewer)
                if not held:
                    del self._by_name[name]
        self.release(viewer.key)

    # ---- broadcasting

    def publish(self, frame: Frame, board: str = DEFAULT_BOARD) -> None:
        group = self._group(board)
        if group.latest is not None and frame.version <= group.latest.version:
            return
        group.latest = frame
        group.number += 1
        group.fresh = True
        self._schedule(group, group.last_sent + self._settings.tick_seconds)

    def _schedule(self, group: _Group, at: float) -> None:
        if group.timer is not None:
            if group.timer_at <= at:
                return
            group.timer.cancel()  # a retry for stuck viewers must not hold back a fresh change
        loop = asyncio.get_running_loop()
        group.timer_at = at
        group.timer = loop.call_at(at - self._clock() + loop.time(), self._tick, group)

    def _tick(self, group: _Group) -> None:
        group.timer = None
        latest = group.latest
        if latest is None or self._groups.get(group.board) is not group:
            return
        members = self._members.get(group.board, set())
        now = self._clock()
        TICKS.inc()
        fresh = group.fresh
        if fresh and latest.commit_us and members:
            BROADCAST.observe(max(0.0, time.time() - latest.commit_us / 1e6))
        group.fresh = False
        targets = tuple(members) if fresh else group.behind
        behind: list[Viewer] = []
        stuck: list[Viewer] = []
        patience = self._settings.slow_viewer_seconds
        number = group.number
        data = latest.frame
        sent = 0
        for viewer in targets:
            if viewer.last_sent >= number or viewer.board != group.board:
                continue
            if viewer.socket.write_frame(data):
                viewer.last_sent = number
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
            group.last_sent = done
        group.behind = behind
        for viewer in stuck:
            SLOW_CLOSED.inc()
            self.remove(viewer)
            viewer.socket.close(CLOSE_TOO_SLOW, "too slow to keep up")
        if behind:
            self._schedule(group, done + self._settings.tick_seconds)

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
