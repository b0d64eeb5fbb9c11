"""One Redis subscription per process, shared by every watcher.

The hub keeps only the newest snapshot. A watcher sends whatever is newest when it is ready to
send: a slow watcher skips intermediate snapshots (conflation) and never receives an older one
after a newer one, and it never slows the subscription or the other watchers. When Redis drops,
the hub resubscribes and re-reads the stored snapshot, so no change is missed for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.client import PubSub

from common.redis_keys import BoardKeys
from common.redis_values import SEQ_FIELD, TS_FIELD, stored_top10
from scoreboard.leaderboard.v1 import leaderboard_pb2
from stream_service.snapshots import build, from_json

log = logging.getLogger("scoreboard.hub")

RECEIVED = Counter("scoreboard_stream_snapshots_received_total", "Snapshots from Redis pub/sub.")
WATCHERS = Gauge("scoreboard_stream_watchers", "Open WatchTop10 streams.")
RESUBSCRIBES = Counter("scoreboard_stream_resubscribes_total", "Redis subscriptions re-opened.")


class SnapshotHub:
    def __init__(
        self, redis: aioredis.Redis, keys: BoardKeys, *, probe_seconds: float = 15.0
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._probe_seconds = probe_seconds
        self._delay = 0.1
        # Subscriptions confirmed so far (1 + re-subscriptions), for metrics and tests.
        self.subscriptions = 0
        self._latest: leaderboard_pb2.Top10Snapshot | None = None
        self._changed = asyncio.Event()
        self._closed = False
        self.subscribed = asyncio.Event()

    @property
    def latest(self) -> leaderboard_pb2.Top10Snapshot | None:
        return self._latest

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, snapshot: leaderboard_pb2.Top10Snapshot) -> bool:
        """Keep the snapshot if it is newer than the one held; wake the watchers."""
        if self._latest is not None and snapshot.sequence <= self._latest.sequence:
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

    async def wait_newer(self, sequence: int) -> leaderboard_pb2.Top10Snapshot | None:
        """The newest snapshot once it is newer than `sequence`; None when the hub closes."""
        while not self._closed:
            latest = self._latest
            if latest is not None and latest.sequence > sequence:
                return latest
            await self._changed.wait()
        return None

    async def run(self) -> None:
        while True:
            # Subscribe confirmations are kept: redis-py re-subscribes by itself after a dropped
            # connection, and each confirmation is when the stored snapshot must be re-read
            # (changes published while the subscription was down are not replayed).
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._keys.channel)
                await self._listen(pubsub)
            except (OSError, aioredis.RedisError) as exc:
                self.subscribed.clear()
                RESUBSCRIBES.inc()
                log.warning("redis subscription lost; resubscribing: %s", exc)
                await asyncio.sleep(self._delay * (0.5 + random.random()))
                self._delay = min(self._delay * 2, 5.0)
            finally:
                with contextlib.suppress(OSError, aioredis.RedisError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: PubSub) -> None:
        """Until the connection fails. A quiet channel is probed with PING: a subscription whose
        server vanished without closing the connection is detected, not waited on forever."""
        quiet_since = time.monotonic()
        probed = False
        while True:
            message = await pubsub.get_message(timeout=self._probe_seconds)
            now = time.monotonic()
            if message is None:
                if now - quiet_since < self._probe_seconds:
                    continue
                if probed:
                    raise ConnectionError("no reply from redis to a subscription PING")
                await pubsub.ping()
                probed = True
                quiet_since = now
                continue
            quiet_since = now
            probed = False
            kind = message.get("type")
            if kind == "subscribe":
                await self._load_stored()
                self.subscriptions += 1
                self.subscribed.set()
                self._delay = 0.1
            elif kind == "message":
                snapshot = from_json(self._keys.board, message["data"])
                if snapshot is None:
                    log.error("malformed snapshot on the channel")
                    continue
                RECEIVED.inc()
                self.offer(snapshot)

    async def _load_stored(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.top)
            pipe.hmget(self._keys.meta, [SEQ_FIELD, TS_FIELD])
            body, (seq, ts) = await pipe.execute()
        stored = stored_top10(body, seq, ts)
        if stored is not None:
            self.offer(build(self._keys.board, stored))
