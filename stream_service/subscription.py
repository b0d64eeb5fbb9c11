"""A Redis channel subscription that outlives its connection, shared by the snapshot and rank hubs:
re-subscribed after a jittered, doubling delay when the connection fails, and probed with PING
while the channel is quiet, so a subscription whose server vanished without closing the
connection is detected, not waited on forever."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

_FIRST_DELAY = 0.1
_MAX_DELAY = 5.0


class Listener(Protocol):
    """What a subscription tells its owner."""

    async def on_subscribe(self) -> None:
        """A subscribe confirmation: the first, and each one after redis-py re-subscribed by
        itself (what was published while the subscription was down is not replayed)."""

    async def on_message(self, data: Any) -> None:
        """A message published on the channel."""

    def on_lost(self, exc: Exception) -> None:
        """The connection failed; the subscription is opened again after a delay."""


class Subscription:
    """Subscribes to `channel` until cancelled, telling `listener` what happens."""

    def __init__(
        self, redis: aioredis.Redis, channel: str, listener: Listener, *, probe_seconds: float
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._listener = listener
        self._probe_seconds = probe_seconds
        self._delay = _FIRST_DELAY

    async def run(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                await self._listen(pubsub)
            except (OSError, aioredis.RedisError) as exc:
                self._listener.on_lost(exc)
                await asyncio.sleep(self._delay * (0.5 + random.random()))
                self._delay = min(self._delay * 2, _MAX_DELAY)
            finally:
                with contextlib.suppress(OSError, aioredis.RedisError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: PubSub) -> None:
        """Until the connection fails."""
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
                await self._listener.on_subscribe()
                self._delay = _FIRST_DELAY
            elif kind == "message":
                await self._listener.on_message(message["data"])
