"""Personal live rank for the online subscribers of one board (DESIGN decision 12).

One Redis subscription per process to the board's rank channel, where the apply script
publishes each applied event's rank move. The hub keeps the online subscribers (WatchRank
streams) by user and:
- pushes SELF to a mover's watches from the move itself (no Redis call);
- pushes OVERTAKEN to the watches of the few users the move names as passed (at most the apply
  script's limit), after one script call that reads only those users' ranks;
- every tick, ranks only the users with a watch (chunks of users, one script call each,
  pipelined) and pushes a threshold crossed or a move of at least a share of the rank.
Each state carries the user's tier by the board's tiers, read from the Redis copy that
leaderboard_service's scheduler keeps (BoardKeys.tiers) at most every TIERS_SECONDS; a change of
tier (a move, or a new definition found by the ticker) is a threshold.
Nothing enumerates the players a score displaces. Each watch sends at most one update per
interval, coalesced to the latest state (a throttle: the first change after a quiet interval
goes out at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram
from redis.commands.core import AsyncScript

from common.redis_keys import BoardKeys
from common.redis_scripts import lua_text, script_source
from common.redis_values import MalformedValue, Move, decode_moves
from common.tiers import Tier, TierError, decode_copy, tier_of
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings
from stream_service.ranks import Player, RankState, build_update, crossed, significant
from stream_service.subscription import Subscription

log = logging.getLogger("scoreboard.rank_hub")

RANK_WATCHERS = Gauge("scoreboard_rank_watchers", "Open WatchRank streams.")
RANK_UPDATES = Counter(
    "scoreboard_rank_updates_total", "RankUpdate messages sent, by reason.", ["reason"]
)
MOVES_RECEIVED = Counter("scoreboard_rank_moves_received_total", "Rank moves from Redis pub/sub.")
TICKER_SECONDS = Histogram(
    "scoreboard_rank_ticker_seconds",
    "Wall time of one ticker pass over the online rank subscribers.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TICKER_COMMANDS = Counter(
    "scoreboard_rank_ticker_redis_commands_total",
    "Redis commands the ticker's script calls ran (as counted by the script).",
)
RANK_READ_USERS = Counter(
    "scoreboard_rank_users_read_total", "User ranks read from Redis, by cause.", ["cause"]
)

# The board's tiers are read again from Redis when the last read is this old (seconds).
TIERS_SECONDS = 2.0

_REASON_NAMES = {
    pb.RANK_REASON_INITIAL: "initial",
    pb.RANK_REASON_SELF: "self",
    pb.RANK_REASON_OVERTAKEN: "overtaken",
    pb.RANK_REASON_THRESHOLD: "threshold",
    pb.RANK_REASON_MOVED: "moved",
}


def _script(asc: bool) -> str:
    """ranks.lua for a board of this sort order, with the shared library of stored values."""
    return script_source(lua_text("stream_service", "ranks"), asc=asc)


@dataclass(frozen=True)
class _Pending:
    state: RankState
    reason: pb.RankReason.ValueType
    by: Player | None
    change_us: int


class RankWatch:
    """One WatchRank stream: the state last sent, and at most one pending change (the latest)."""

    def __init__(self, board: str, user_id: str, settings: RankSettings) -> None:
        self.board = board
        self.user_id = user_id
        self._settings = settings
        self.sent: RankState | None = None
        self._sent_at = -1e18
        self._pending: _Pending | None = None
        self._wake = asyncio.Event()
        self.closed = False

    @property
    def told(self) -> RankState | None:
        """The newest state this watch has sent or will send."""
        return self._pending.state if self._pending is not None else self.sent

    def offer(
        self,
        state: RankState,
        reason: pb.RankReason.ValueType,
        *,
        by: Player | None = None,
        change_us: int = 0,
    ) -> None:
        pending = self._pending
        if pending is not None and reason == pb.RANK_REASON_MOVED:
            # The ticker never hides an event's reason; its state is the newer one.
            self._pending = _Pending(state, pending.reason, pending.by, pending.change_us)
        else:
            self._pending = _Pending(state, reason, by, change_us)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self) -> pb.RankUpdate | None:
        """The next update to send, once the interval since the last one has passed; None when
        the watch is closed."""
        while not self.closed:
            if self._pending is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._sent_at + self._settings.min_interval_seconds - time.monotonic()
            if wait > 0 and self.sent is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        while not self.closed:
                            self._wake.clear()
                            await self._wake.wait()
                continue
            pending, self._pending = self._pending, None
            update = self._build(pending)
            if update is None:
                continue
            self.sent = pending.state
            self._sent_at = time.monotonic()
            RANK_UPDATES.labels(_REASON_NAMES.get(update.reason, "other")).inc()
            return update
        return None

    def _build(self, pending: _Pending) -> pb.RankUpdate | None:
        old = self.sent
        reason = pending.reason
        names: list[str] = []
        if old is not None:
            if old == pending.state and reason != pb.RANK_REASON_SELF:
                return None  # nothing changed since the last update
            names = crossed(old, pending.state, self._settings)
            if names:
                reason = pb.RANK_REASON_THRESHOLD
        return build_update(
            self.board,
            self.user_id,
            pending.state,
            reason,
            self._settings,
            crossed_names=names,
            by=pending.by,
            change_us=pending.change_us,
        )


class RankHub:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: BoardKeys,
        settings: RankSettings,
        *,
        probe_seconds: float = 15.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._probe_seconds = probe_seconds
        # ranks.lua per sort order (the hub learns its board's with the tiers, see load_tiers).
        self._scripts: dict[bool, AsyncScript] = {
            asc: redis.register_script(_script(asc)) for asc in (False, True)
        }
        self._watches: dict[str, set[RankWatch]] = {}
        self._closed = False
        self.subscribed = asyncio.Event()
        self._tiers: tuple[Tier, ...] = ()
        self._asc = keys.asc
        self._tiers_read = -1e18
        # Ticker passes run and Redis commands they ran (for tests and the bench).
        self.ticks = 0
        self.ticker_commands = 0

    @property
    def _script(self) -> AsyncScript:
        return self._scripts[self._asc]

    @property
    def board(self) -> str:
        return self._keys.board

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def settings(self) -> RankSettings:
        return self._settings

    def __len__(self) -> int:
        return sum(len(w) for w in self._watches.values())

    # ---- tiers

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    async def load_tiers(self, *, max_age: float = TIERS_SECONDS) -> None:
        """Read the board's tiers from Redis when the last read is older than `max_age`. A
        missing copy means none (yet); a malformed one keeps what was read before."""
        now = time.monotonic()
        if now - self._tiers_read < max_age:
            return
        self._tiers_read = now
        data = await self._redis.get(self._keys.tiers)
        if data is None:
            self._tiers = ()
            return
        try:
            self._tiers, self._asc = decode_copy(data)
        except TierError as exc:
            log.error("malformed tiers of board %s in redis: %s", self._keys.board, exc)

    def _tiered(self, state: RankState) -> RankState:
        tier = tier_of(self._tiers, state.rank, state.total, state.score, asc=self._asc)
        return state if tier == state.tier else replace(state, tier=tier)

    # ---- watches

    async def watch(self, user_id: str) -> RankWatch:
        """A new watch for the user, holding its current rank (sent at once)."""
        watch = RankWatch(self._keys.board, user_id, self._settings)
        self._watches.setdefault(user_id, set()).add(watch)
        RANK_WATCHERS.inc()
        try:
            await self.load_tiers()
            states = await self.read([user_id], cause="initial")
        except BaseException:
            self.unwatch(watch)
            raise
        state = states.get(user_id)
        if state is not None:
            watch.offer(state, pb.RANK_REASON_INITIAL)
        return watch

    def unwatch(self, watch: RankWatch) -> None:
        watches = self._watches.get(watch.user_id)
        if watches is None or watch not in watches:
            return
        watches.discard(watch)
        if not watches:
            del self._watches[watch.user_id]
        watch.close()
        RANK_WATCHERS.dec()

    def close(self) -> None:
        self._closed = True
        for watches in self._watches.values():
            for watch in watches:
                watch.close()

    # ---- reading ranks

    async def read(self, user_ids: Sequence[str], *, cause: str) -> dict[str, RankState]:
        """The rank states of these users (chunks pipelined); empty when the ranking is not
        ready. Users without a stored state are ranked 0."""
        chunks = self._chunks(user_ids)
        if not chunks:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for users in chunks:
                await self._script(keys=self._read_keys(), args=users, client=pipe)
            replies: list[Any] = await pipe.execute()
        RANK_READ_USERS.labels(cause).inc(len(user_ids))
        states: dict[str, RankState] = {}
        for users, reply in zip(chunks, replies, strict=True):
            chunk_states = self._states(users, reply, cause)
            if chunk_states is None:
                return {}
            states.update(chunk_states)
        return states

    async def _read_in_turn(
        self, user_ids: Sequence[str], *, cause: str
    ) -> AsyncGenerator[dict[str, RankState], None]:
        """The rank states of these users, one chunk at a time, for a pass over many users: the
        next chunk's call is already on its way (pipelined two deep) while this one is decoded
        and used, and nothing decodes more than one chunk's reply without yielding to the event
        loop. Stops when the ranking is not ready."""
        chunks = self._chunks(user_ids)
        if not chunks:
            return
        keys = self._read_keys()
        ahead: asyncio.Future[Any] = asyncio.ensure_future(self._script(keys=keys, args=chunks[0]))
        try:
            for index, users in enumerate(chunks):
                reply = await ahead
                if index + 1 < len(chunks):
                    ahead = asyncio.ensure_future(self._script(keys=keys, args=chunks[index + 1]))
                RANK_READ_USERS.labels(cause).inc(len(users))
                states = self._states(users, reply, cause)
                if states is None:
                    return
                yield states
        finally:
            if not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, aioredis.RedisError):
                    await ahead

    def _chunks(self, user_ids: Sequence[str]) -> list[list[str]]:
        chunk = self._settings.tick_chunk
        return [list(user_ids[i : i + chunk]) for i in range(0, len(user_ids), chunk)]

    def _read_keys(self) -> list[str]:
        return [self._keys.ranking, self._keys.users, self._keys.ready]

    def _states(self, users: list[str], reply: Any, cause: str) -> dict[str, RankState] | None:
        """One chunk's script reply decoded; None when the ranking is not ready."""
        if not int(reply[0]):
            return None
        total = int(reply[1])
        if cause == "ticker":
            self.ticker_commands += int(reply[2])
            TICKER_COMMANDS.inc(int(reply[2]))
        states: dict[str, RankState] = {}
        for index, user in enumerate(users):
            rank, score, nxt, _name = reply[3 + 4 * index : 7 + 4 * index]
            next_text = nxt.decode() if isinstance(nxt, bytes) else str(nxt)
            states[user] = self._tiered(
                RankState(int(rank), int(score), total, int(next_text) if next_text else None)
            )
        return states

    # ---- moves

    async def on_moves(self, ranked: int, moves: Iterable[Move]) -> None:
        """SELF to the movers' watches (from the move), OVERTAKEN to the watches of the users
        they passed (one read of those users only)."""
        passers: dict[str, Move] = {}
        await self.load_tiers()
        for move in moves:
            for watch in self._watches.get(move.user_id, ()):
                state = self._tiered(RankState(move.new_rank, move.score, ranked, move.next_score))
                watch.offer(state, pb.RANK_REASON_SELF, change_us=move.commit_us)
            for passed in move.passed:
                if passed in self._watches:
                    passers[passed] = move  # the latest mover to pass it names it
        if not passers:
            return
        states = await self.read(list(passers), cause="overtaken")
        for user, state in states.items():
            move = passers[user]
            for watch in self._watches.get(user, ()):
                watch.offer(
                    state,
                    pb.RANK_REASON_OVERTAKEN,
                    by=Player(move.user_id, move.name),
                    change_us=move.commit_us,
                )

    # ---- ticker

    async def tick(self) -> int:
        """One pass: rank the users with a watch, push what is significant. Returns the users
        ranked. Chunk by chunk, yielding to the event loop after each, so a pass over thousands
        of subscribers never holds up the process's other streams (WatchTop10, moves)."""
        await self.load_tiers()
        users = list(self._watches)
        if not users:
            return 0
        started = time.perf_counter()
        async with contextlib.aclosing(self._read_in_turn(users, cause="ticker")) as chunks:
            async for states in chunks:
                for user, state in states.items():
                    for watch in self._watches.get(user, ()):
                        told = watch.told
                        if told is None or significant(told, state, self._settings):
                            watch.offer(state, pb.RANK_REASON_MOVED)
                await asyncio.sleep(0)
        self.ticks += 1
        TICKER_SECONDS.observe(time.perf_counter() - started)
        return len(users)

    async def run_ticker(self) -> None:
        period = self._settings.tick_seconds
        if period <= 0:
            return
        while not self._closed:
            await asyncio.sleep(period)
            try:
                await self.tick()
            except (OSError, aioredis.RedisError) as exc:
                log.warning("rank ticker pass failed: %s", exc)

    # ---- subscription

    async def run(self) -> None:
        subscription = Subscription(
            self._redis, self._keys.rank_channel, self, probe_seconds=self._probe_seconds
        )
        await subscription.run()

    async def on_subscribe(self) -> None:
        await self.load_tiers(max_age=0)
        self.subscribed.set()
        # Moves published while the subscription was down are not replayed: the next ticker
        # pass finds what they changed.

    async def on_message(self, data: Any) -> None:
        if not self._watches:
            return
        try:
            moves = decode_moves(data)
        except MalformedValue:
            log.error("malformed rank moves on the channel")
            return
        MOVES_RECEIVED.inc()
        await self.on_moves(moves.ranked, moves.moves)

    def on_lost(self, exc: Exception) -> None:
        self.subscribed.clear()
        log.warning("rank subscription lost; resubscribing: %s", exc)
