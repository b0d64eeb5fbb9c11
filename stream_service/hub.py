"""One Redis subscription per process, shared by every watcher.

The hub keeps only the newest snapshot. A watcher sends whatever is newest when it is ready to
send: a slow watcher skips intermediate snapshots (conflation) and never receives an older one
after a newer one, and it never slows the subscription or the other watchers. When Redis drops,
the hub resubscribes and re-reads the stored snapshot, so no change is missed for good.
"""

from __future__ import annotations

import asyncio
import logging
import random

import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from common.keys import BoardKeys
from scoreboard.leaderboard.v1 import leaderboard_pb2
from stream_service.snapshots import build, from_json

log = logging.getLogger("scoreboard.hub")

RECEIVED = Counter("scoreboard_stream_snapshots_received_total", "Snapshots from Redis pub/sub.")
WATCHERS = Gauge("scoreboard_stream_watchers", "Open WatchTop10 streams.")
RESUBSCRIBES = Counter("scoreboard_stream_resubscribes_total", "Redis subscriptions re-opened.")


class SnapshotHub:
    def __init__(self, redis: aioredis.Redis, keys: BoardKeys) -> None:
        self._redis = redis
        self._keys = keys
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
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._keys.channel)
                await self._load_stored()
                self.subscribed.set()
                delay = 0.1
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    snapshot = from_json(self._keys.board, message["data"])
                    if snapshot is None:
                        log.error("malformed snapshot on the channel")
                        continue
                    RECEIVED.inc()
                    self.offer(snapshot)
                raise ConnectionError("subscription ended")
            except (OSError, aioredis.RedisError) as exc:
                self.subscribed.clear()
                RESUBSCRIBES.inc()
                log.warning("redis subscription lost; resubscribing: %s", exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _load_stored(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.top)
            pipe.hmget(self._keys.meta, ["seq", "ts"])
            body, (seq, ts) = await pipe.execute()
        if body is None or seq is None:
            return
        self.offer(build(self._keys.board, int(seq), int(ts or 0), orjson.loads(body)))
