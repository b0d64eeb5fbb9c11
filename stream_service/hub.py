"""One Redis subscription per process and board, shared by every watcher of the board.

The hub keeps only the newest snapshot. A watcher sends whatever is newest when it is ready to
send: a slow watcher skips intermediate snapshots (conflation) and never receives an older one
after a newer one, and it never slows the subscription or the other watchers. When Redis drops,
the hub resubscribes and re-reads the stored snapshot, so no change is missed for good.

Periods (DESIGN decision 11): snapshots are ordered by (period, sequence), so the first snapshot
of a new period replaces the old period's board whatever its sequence, and a late change of a
closed period never reaches a watcher. The hub knows the board's current period from the
board's PeriodClosed stream (the latest close names the next period; a next period whose keys
were built before its close event was relayed is found by looking one period ahead) and from
the snapshots that name their period. It follows that stream, so when a period closes the new
(empty) period's board goes out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from common.redis_keys import BoardKeys
from common.redis_values import SEQ_FIELD, TS_FIELD, MalformedValue, stored_top10
from scoreboard.events.v1 import events_pb2
from scoreboard.leaderboard.v1 import leaderboard_pb2
from stream_service.snapshots import Version, build, from_json, version
from stream_service.subscription import Subscription

log = logging.getLogger("scoreboard.hub")

RECEIVED = Counter("scoreboard_stream_snapshots_received_total", "Snapshots from Redis pub/sub.")
WATCHERS = Gauge("scoreboard_stream_watchers", "Open WatchTop10 streams.")
RESUBSCRIBES = Counter("scoreboard_stream_resubscribes_total", "Redis subscriptions re-opened.")
PERIODS_SEEN = Counter(
    "scoreboard_stream_periods_closed_total", "Period closes the snapshot hubs moved past."
)

# How many periods past the last close event the hub looks for built keys.
_LOOK_AHEAD = 3
# Block time of one read of the board's PeriodClosed stream.
_PERIODS_BLOCK_MS = 5000


class SnapshotHub:
    def __init__(
        self, redis: aioredis.Redis, keys: BoardKeys, *, probe_seconds: float = 15.0
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._probe_seconds = probe_seconds
        # Subscriptions confirmed so far (1 + re-subscriptions), for metrics and tests.
        self.subscriptions = 0
        self._latest: leaderboard_pb2.Top10Snapshot | None = None
        self._changed = asyncio.Event()
        self._closed = False
        self.subscribed = asyncio.Event()
        # The board's period open now, as far as this hub knows (0: not known yet).
        self.period = 0
        self.period_known = asyncio.Event()

    @property
    def board(self) -> str:
        return self._keys.board

    @property
    def latest(self) -> leaderboard_pb2.Top10Snapshot | None:
        return self._latest

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, snapshot: leaderboard_pb2.Top10Snapshot) -> bool:
        """Keep the snapshot if it is newer than the one held; wake the watchers."""
        if self._latest is not None and version(snapshot) <= version(self._latest):
            return False
        self._latest = snapshot
        self._wake()
        return True

    def close(self) -> None:
        """End every watch (shutdown): watchers return and their streams end cleanly."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_newer(self, after: Version) -> leaderboard_pb2.Top10Snapshot | None:
        """The newest snapshot once it is newer than `after` ((period, sequence)); None when the
        hub closes. A hub that moved to a new period wakes its watchers too."""
        while not self._closed:
            latest = self._latest
            if latest is not None and version(latest) > after:
                return latest
            await self._changed.wait()
        return None

    async def run(self) -> None:
        """The subscription and the period follower, until cancelled."""
        follower = asyncio.create_task(self._follow_periods(), name=f"periods:{self.board}")
        try:
            await self._subscribe_forever()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _subscribe_forever(self) -> None:
        # Subscribe confirmations are kept: redis-py re-subscribes by itself after a dropped
        # connection, and each confirmation is when the stored snapshot must be re-read
        # (changes published while the subscription was down are not replayed).
        subscription = Subscription(
            self._redis, self._keys.channel, self, probe_seconds=self._probe_seconds
        )
        await subscription.run()

    async def on_subscribe(self) -> None:
        await self._move_to(await self._discover_period())
        self.subscriptions += 1
        self.subscribed.set()

    async def on_message(self, data: Any) -> None:
        snapshot = from_json(self._keys.board, data, max(self.period, 1))
        if snapshot is None:
            log.error("malformed snapshot on the channel")
            return
        RECEIVED.inc()
        if snapshot.period > self.period:
            self._set_period(snapshot.period)
        self.offer(snapshot)

    def on_lost(self, exc: Exception) -> None:
        self.subscribed.clear()
        RESUBSCRIBES.inc()
        log.warning("redis subscription lost; resubscribing: %s", exc)

    def _set_period(self, period: int) -> None:
        if period > self.period:
            self.period = period
        self.period_known.set()

    async def _discover_period(self) -> int:
        """The board's current period from Redis: after the latest close event, or a later
        period whose keys are built already."""
        entries: Any = await self._redis.xrevrange(self._keys.period_events, count=1)
        period = max(self.period, 1)
        if entries:
            try:
                period = max(period, _closed_event(entries[0][1]).next_period)
            except (KeyError, ValueError) as exc:
                log.error("malformed period event: %s", exc)
        for _ in range(_LOOK_AHEAD):
            if not await self._redis.exists(self._keys.of_period(period + 1).meta):
                break
            period += 1
        return period

    async def _move_to(self, period: int) -> None:
        """Make `period` current (never going back) and offer its stored snapshot."""
        self._set_period(period)
        await self._load_stored(self.period)

    async def _load_stored(self, period: int) -> None:
        keys = self._keys.of_period(period)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.top)
            pipe.hmget(keys.meta, [SEQ_FIELD, TS_FIELD])
            body, (seq, ts) = await pipe.execute()
        try:
            stored = stored_top10(body, seq, ts)
        except MalformedValue as exc:
            log.error("malformed stored snapshot: %s", exc)
            return
        if stored is not None:
            self.offer(build(self._keys.board, stored, period))

    async def _follow_periods(self) -> None:
        """Read the board's PeriodClosed stream: each close moves the hub to the next period
        and offers that period's stored board (empty at first) at once."""
        last_id: bytes | str = "$"
        delay = 0.1
        while True:
            try:
                if last_id == "$":
                    newest: Any = await self._redis.xrevrange(self._keys.period_events, count=1)
                    last_id = newest[0][0] if newest else "0-0"
                reply: Any = await self._redis.xread(
                    {self._keys.period_events: last_id}, count=16, block=_PERIODS_BLOCK_MS
                )
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        last_id = entry_id
                        await self._period_closed(fields)
                delay = 0.1
            except (OSError, aioredis.RedisError) as exc:
                log.warning("reading the period stream failed; retrying: %s", exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)

    async def _period_closed(self, fields: dict[bytes, bytes]) -> None:
        try:
            event = _closed_event(fields)
        except (KeyError, ValueError) as exc:
            log.error("malformed period event: %s", exc)
            return
        if event.next_period <= self.period:
            return
        PERIODS_SEEN.inc()
        log.info(
            "period closed; watchers move to the next one",
            extra={"board": self.board, "period": event.period},
        )
        await self._move_to(event.next_period)
        if self._latest is None or self._latest.period < self.period:
            # The next period's board is not built yet: it starts empty, and its first stored
            # snapshot (a higher sequence) replaces this one.
            self.offer(
                leaderboard_pb2.Top10Snapshot(
                    board_id=self.board, period=self.period, sequence=0, commit_time=None
                )
            )


def _closed_event(fields: dict[bytes, bytes]) -> events_pb2.PeriodClosed:
    raw = fields.get(b"c")
    if raw is None:
        raise KeyError("c")
    try:
        return events_pb2.PeriodClosed.FromString(raw)
    except Exception as exc:  # protobuf's DecodeError
        raise ValueError(str(exc)) from exc
