"""The outbox relay: moves committed score events from PostgreSQL to the Redis Stream.

Each pass takes a batch of outbox rows (one statement: FOR UPDATE SKIP LOCKED, so several relays
share the work without waiting on each other, and DELETE … RETURNING), XADDs them and commits. A
crash before the commit rolls the delete back and leaves the rows in place: they are published
again (a crash after XADD publishes them twice), and consumers ignore the duplicates by version.
Nothing is ever lost: a row leaves the outbox only when the transaction that published it
commits, after its XADD.

The stream is never trimmed by length here (that would drop events no consumer has applied):
the consumers trim what they have acknowledged, and while a board's stream holds
stream_max_length entries (its consumers are down or far behind) the relay publishes nothing for
it and the events wait in the outbox, on PostgreSQL's disk instead of in Redis's memory.

The relay is woken by LISTEN/NOTIFY and also sweeps every sweep_seconds, so a lost notification
(or a relay that cannot LISTEN) only delays. It never keeps an "id > last seen" cursor: ids
commit out of order. Any failure (PostgreSQL or Redis down, a hung Redis) only pauses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import psycopg
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from common.db import Pool
from common.redis_keys import Keys
from score_service import outbox
from score_service.config import RelaySettings

log = logging.getLogger("scoreboard.relay")

RELAYED = Counter("scoreboard_outbox_relayed_total", "Outbox rows published to the stream.")
BACKLOG = Gauge("scoreboard_outbox_backlog", "Outbox rows waiting, as of the last sweep.")
FAILURES = Counter("scoreboard_outbox_relay_failures_total", "Relay passes that failed.")

# Test hook, called with the stage: "claimed" (rows locked, nothing published yet) and
# "published" (after XADD, before the delete commits).
FaultHook = Callable[[str], Awaitable[None]]

# How long a board's stream length read by XLEN is trusted (plus what the relay added since).
_LENGTH_FRESH_SECONDS = 1.0


class _KeepRows(Exception):
    """Raised inside a pass's transaction to roll its delete back (nothing was published)."""


class OutboxRelay:
    def __init__(
        self,
        pool: Pool,
        redis: aioredis.Redis,
        keys: Keys,
        settings: RelaySettings,
        *,
        database_url: str,
        fault: FaultHook | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._database_url = database_url
        self._fault = fault
        self._wake = asyncio.Event()
        # Per board: (time.monotonic() of the last XLEN, that length + what was added since).
        self._lengths: dict[str, tuple[float, int]] = {}
        # Set once the listener is subscribed (tests wait for it before relying on NOTIFY).
        self.listening = asyncio.Event()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen()) if self._settings.listen else None
        try:
            while True:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that arrives together with the wake-up, and the relay would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.sweep_seconds):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    while await self.drain_once() >= self._settings.batch_size:
                        pass
                except Exception as exc:  # any failure only pauses the relay
                    FAILURES.inc()
                    log.warning("outbox relay pass failed; will retry: %r", exc)
                    await asyncio.sleep(min(1.0, self._settings.sweep_seconds))
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def drain_once(self) -> int:
        """Publish one batch; return how many rows it moved."""
        try:
            return await self._pass()
        except _KeepRows:
            return 0

    async def _pass(self) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            rows = await outbox.take(conn, self._settings.batch_size)
            if not rows:
                BACKLOG.set(0)
                return 0
            if self._fault is not None:
                await self._fault("claimed")
            # Bounded, so a hung Redis cannot keep the rows (and a connection) locked.
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                if await self._full(rows):
                    # The rows stay in the outbox; the next sweep tries again.
                    raise _KeepRows
                async with self._redis.pipeline(transaction=False) as pipe:
                    for row in rows:
                        board = self._keys.board(row.board_id)
                        if row.kind == outbox.PERIOD_CLOSED:
                            pipe.xadd(
                                board.period_events,
                                {"c": row.payload},
                                maxlen=outbox.PERIOD_STREAM_MAX_LENGTH,
                                approximate=True,
                            )
                        else:
                            pipe.xadd(board.events, {"e": row.payload})
                    await pipe.execute()
            if self._fault is not None:
                await self._fault("published")
        RELAYED.inc(len(rows))
        return len(rows)

    async def _full(self, rows: list[outbox.OutboxRow]) -> bool:
        """True when a board's stream holds stream_max_length entries: its consumers are down
        or far behind, and publishing more would only grow Redis's memory.

        A board's length is asked (XLEN) at most once a second while it stays far below the
        cap: in between, the last length read plus what this relay added since is an upper
        bound as far as this relay goes (consumers only shorten the stream), so the pass saves
        a round trip. Other replicas' relays can add up to a second of their events on top."""
        limit = self._settings.stream_max_length
        now = time.monotonic()
        adding: dict[str, int] = {}
        for row in rows:
            adding[row.board_id] = adding.get(row.board_id, 0) + 1
        stale = [
            b
            for b in sorted(adding)
            if (known := self._lengths.get(b)) is None
            or now - known[0] >= _LENGTH_FRESH_SECONDS
            or known[1] + adding[b] >= limit
        ]
        if stale:
            async with self._redis.pipeline(transaction=False) as pipe:
                for board in stale:
                    pipe.xlen(self._keys.board(board).events)
                lengths = await pipe.execute()
            for board, length in zip(stale, lengths, strict=True):
                self._lengths[board] = (now, int(length))
        full = [b for b in stale if self._lengths[b][1] >= limit]
        if not full:
            for board, count in adding.items():
                checked, length = self._lengths[board]
                self._lengths[board] = (checked, length + count)
        if full:
            log.warning(
                "event stream full (%d entries): events wait in the outbox until the"
                " consumers catch up",
                limit,
                extra={"boards": full},
            )
        return bool(full)

    async def _listen(self) -> None:
        """Wake the relay on NOTIFY; reconnect when the connection drops."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._database_url, autocommit=True, application_name="score_service-relay"
                ) as conn:
                    await conn.execute(f"LISTEN {outbox.CHANNEL}")
                    self.listening.set()
                    self._wake.set()  # catch up on anything committed while not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except (OSError, psycopg.Error) as exc:
                log.warning("outbox listener lost its connection: %r", exc)
            self.listening.clear()
            await asyncio.sleep(1.0)
