"""The stream consumer: reads ScoreUpdated events in a consumer group and applies each batch with
one Lua script that also acknowledges it (so a consumer killed mid-batch leaves it pending, to be
delivered again; the version check makes the repeat harmless).

Pending entries of a dead consumer are claimed with XAUTOCLAIM. An entry that cannot be applied
after max_deliveries attempts moves to the dead-letter stream and stops blocking the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import ResponseError

from common.keys import BoardKeys
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.events import parse, script_args
from leaderboard_service.scripts import Scripts, text

log = logging.getLogger("scoreboard.consumer")

APPLIED = Counter("scoreboard_events_applied_total", "Events that changed the ranking.")
RECEIVED = Counter("scoreboard_events_received_total", "Events read from the stream.")
DEAD_LETTERS = Counter("scoreboard_dead_letters_total", "Events moved to the dead-letter stream.")
PUBLISHED = Counter("scoreboard_top10_published_total", "Top-10 changes published.")

Entry = tuple[str, dict[bytes, bytes]]
# Test hook, called with the batch's entry ids just before the apply script runs.
FaultHook = Callable[[list[str]], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        redis: aioredis.Redis,
        scripts: Scripts,
        keys: BoardKeys,
        settings: ConsumerSettings,
        *,
        on_not_ready: Callable[[], None],
        fault: FaultHook | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._keys = keys
        self._settings = settings
        self._on_not_ready = on_not_ready
        self._fault = fault
        self._last_claim = 0.0

    async def run(self) -> None:
        await self._ensure_group()
        await self._process(await self._read("0"))  # my own pending entries, after a restart
        while True:
            try:
                if time.monotonic() - self._last_claim > self._settings.claim_idle_ms / 2000:
                    await self._claim_stale()
                await self._process(await self._read(">"))
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("consumer group missing (Redis wiped?); recreating it")
                    await self._ensure_group()
                    self._on_not_ready()
                else:
                    raise
            except (OSError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("consumer cannot reach Redis: %s", exc)
                await asyncio.sleep(0.5)

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                self._keys.events, self._settings.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, start: str) -> list[Entry]:
        reply: Any = await self._redis.xreadgroup(
            self._settings.group,
            self._settings.name,
            {self._keys.events: start},
            count=self._settings.batch_size,
            block=None if start == "0" else self._settings.block_ms,
        )
        if not reply:
            return []
        entries: list[Entry] = []
        for _stream, items in reply:
            for entry_id, fields in items:
                if fields is not None:  # a pending entry trimmed from the stream has no fields
                    entries.append((text(entry_id), fields))
        return entries

    async def _claim_stale(self) -> None:
        self._last_claim = time.monotonic()
        start = "0-0"
        while True:
            reply: Any = await self._redis.xautoclaim(
                self._keys.events,
                self._settings.group,
                self._settings.name,
                min_idle_time=self._settings.claim_idle_ms,
                start_id=start,
                count=self._settings.batch_size,
            )
            start = text(reply[0])
            claimed = [(text(i), f) for i, f in reply[1] if f is not None]
            if claimed:
                log.info("claimed stale entries", extra={"count": len(claimed)})
                await self._process(await self._drop_exhausted(claimed))
            if start == "0-0":
                return

    async def _drop_exhausted(self, entries: list[Entry]) -> list[Entry]:
        """Entries delivered too often go to the dead-letter stream."""
        pending = await self._redis.xpending_range(
            self._keys.events,
            self._settings.group,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) * 2,
            consumername=self._settings.name,
        )
        deliveries = {text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        keep: list[Entry] = []
        for entry in entries:
            if deliveries.get(entry[0], 0) > self._settings.max_deliveries:
                await self._dead_letter(entry, "delivered too many times")
            else:
                keep.append(entry)
        return keep

    async def _dead_letter(self, entry: Entry, why: str) -> None:
        entry_id, fields = entry
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                self._keys.dead_letters,
                {**{k.decode(): v for k, v in fields.items()}, "id": entry_id, "why": why},
                maxlen=100_000,
                approximate=True,
            )
            pipe.xack(self._keys.events, self._settings.group, entry_id)
            await pipe.execute()
        DEAD_LETTERS.inc()
        log.error("event moved to dead letters", extra={"entry": entry_id, "why": why})

    async def _process(self, entries: list[Entry]) -> None:
        if not entries:
            return
        RECEIVED.inc(len(entries))
        valid: list[tuple[str, list[str]]] = []
        for entry in entries:
            event = parse(entry[1].get(b"e", b""))
            if event is None:
                await self._dead_letter(entry, "not a valid ScoreUpdated event")
            else:
                valid.append((entry[0], script_args(event)))
        if not valid:
            return
        if self._fault is not None:
            await self._fault([entry_id for entry_id, _ in valid])
        try:
            await self._apply(valid)
        except ResponseError as exc:
            if "NOSCRIPT" in str(exc) or "NOGROUP" in str(exc):
                raise
            log.warning("batch failed; applying its events one by one: %s", exc)
            for item in valid:
                try:
                    await self._apply([item])
                except ResponseError as single:
                    # Stays pending: claimed again later, dead-lettered after max_deliveries.
                    log.error("event failed", extra={"entry": item[0], "error": str(single)})

    async def _apply(self, batch: Sequence[tuple[str, list[str]]]) -> None:
        keys = self._keys
        args: list[Any] = [
            keys.channel,
            str(time.time_ns() // 1000),
            self._settings.group,
            len(batch),
        ]
        for _, event_args in batch:
            args.extend(event_args)
        args.extend(entry_id for entry_id, _ in batch)
        applied, seq, ready = await self._scripts.apply(
            keys=[
                keys.ranking,
                keys.users,
                keys.top,
                keys.meta,
                keys.ready,
                keys.rebuild_lock,
                keys.touched,
                keys.events,
            ],
            args=args,
        )
        APPLIED.inc(int(applied))
        if text(seq) != "0":
            PUBLISHED.inc()
        if not int(ready):
            self._on_not_ready()
