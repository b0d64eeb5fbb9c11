"""The stream consumer: reads ScoreUpdated events in a consumer group and applies each batch with
one Lua script that also acknowledges it (so a consumer killed mid-batch leaves it pending, to be
delivered again; the version check makes the repeat harmless).

After a start or an error it first re-reads its own pending entries. Pending entries of a dead
consumer are claimed with XAUTOCLAIM. An entry that is not a usable event goes to the
dead-letter stream at once; one that keeps failing goes there once it has been delivered more
than max_deliveries times, and stops blocking the others. The user a dead letter names is
repaired from PostgreSQL at once (its current state, applied with the version guard), so the
ranking does not wait for the user's next action; a dead letter whose user cannot be read is
counted and logged, and left to the periodic check.

Every trim_seconds it trims what every group has read and acknowledged, and nothing else: the
stream is a queue (the ledger is the record), and an entry no group has finished with is never
dropped, however far behind the consumers are."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import ResponseError

from common.lifecycle import raise_if_cancelling
from common.redis_keys import BoardKeys
from leaderboard_service.config import ApplyHook, ConsumerSettings
from leaderboard_service.events import canonical_user_id, parse, script_args
from leaderboard_service.scripts import Scripts, text
from scoreboard.events.v1 import events_pb2

log = logging.getLogger("scoreboard.consumer")

APPLIED = Counter("scoreboard_events_applied_total", "Events that changed the ranking.")
RECEIVED = Counter("scoreboard_events_received_total", "Events read from the stream.")
DEAD_LETTERS = Counter(
    "scoreboard_dead_letters_total",
    "Events moved to the dead-letter stream, by reason (malformed, exhausted).",
    ["reason"],
)
UNREPAIRED = Counter(
    "scoreboard_dead_letters_unrepaired_total",
    "Dead letters whose user was not repaired at once, by reason (unreadable: no user id in the"
    " payload; failed: the repair failed); the periodic check is left to find them.",
    ["reason"],
)
FAILED = Counter("scoreboard_event_failures_total", "Event applications that failed (retried).")
PUBLISHED = Counter("scoreboard_top10_published_total", "Top-10 changes published.")
CLAIMED = Counter("scoreboard_events_claimed_total", "Pending entries claimed from others.")

Entry = tuple[str, dict[bytes, bytes] | None]
# Replaces the named users' ranking entries by their PostgreSQL state (version-guarded).
Repair = Callable[[Collection[str]], Awaitable[int]]
DEAD_LETTER_MAX_LENGTH = 100_000
# Consumers with nothing pending and idle this many claim intervals are removed from the group.
FORGET_AFTER_CLAIM_INTERVALS = 20


def _stream_id(value: str) -> tuple[int, int]:
    milliseconds, _, sequence = value.partition("-")
    return int(milliseconds), int(sequence or 0)


def _named_user(payload: bytes) -> str | None:
    """The user id a dead-lettered payload still names, if any."""
    try:
        user = events_pb2.ScoreUpdated.FromString(payload).user_id
    except Exception:  # protobuf raises DecodeError, or others from upb
        return None
    return user if canonical_user_id(user) else None


def _stream_lost(exc: ResponseError) -> bool:
    """The stream or its group vanished (Redis wiped or restarted empty)."""
    message = str(exc)
    return message.startswith(("NOGROUP", "UNBLOCKED"))


class EventConsumer:
    def __init__(
        self,
        redis: aioredis.Redis,
        scripts: Scripts,
        keys: BoardKeys,
        settings: ConsumerSettings,
        *,
        on_not_ready: Callable[[], None],
        fault: ApplyHook | None = None,
        repair: Repair | None = None,
        asc: Callable[[], bool] | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._keys = keys
        # The board's sort order as known now: it may change until the board has scores, so
        # it is read at every batch, not once at the start (else: keys.asc).
        self._asc = asc
        self._settings = settings
        self._on_not_ready = on_not_ready
        self._fault = fault
        self._repair = repair
        self._last_claim = 0.0
        self._last_trim = time.monotonic()

    @property
    def name(self) -> str:
        return self._settings.name

    async def run(self) -> None:
        recover = True
        delay = 0.1
        while True:
            raise_if_cancelling()
            try:
                if recover:
                    await self._ensure_group()
                    await self._drain_own_pending()
                    recover = False
                if time.monotonic() - self._last_claim > self._settings.claim_idle_ms / 2000:
                    await self._claim_stale()
                trim = self._settings.trim_seconds
                if trim and time.monotonic() - self._last_trim > trim:
                    await self._trim_consumed()
                await self._process(await self._read(">"), check_deliveries=False)
                delay = 0.1
            except ResponseError as exc:
                raise_if_cancelling()
                recover = True
                if _stream_lost(exc):
                    log.warning("event stream or group missing (Redis wiped?); recreating it")
                    self._on_not_ready()
                    continue
                log.error("consumer step failed; retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except (OSError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                raise_if_cancelling()
                recover = True
                log.warning("consumer cannot reach Redis: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                raise_if_cancelling()
                recover = True
                log.exception("consumer step failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

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
            block=None if start != ">" else self._settings.block_ms,
        )
        if not reply:
            return []
        entries: list[Entry] = []
        for _stream, items in reply:
            for entry_id, fields in items:
                entries.append((text(entry_id), fields))
        return entries

    async def _drain_own_pending(self) -> None:
        """Re-read what this consumer read before a restart or an error, and was not acked."""
        start = "0"
        while True:
            entries = await self._read(start)
            if not entries:
                return
            await self._process(entries, check_deliveries=True)
            start = entries[-1][0]

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
            claimed: list[Entry] = [(text(i), f) for i, f in reply[1]]
            if claimed:
                CLAIMED.inc(len(claimed))
                log.info("claimed stale entries", extra={"count": len(claimed)})
                await self._process(claimed, check_deliveries=True)
            if start == "0-0":
                break
        await self._forget_idle_consumers()

    async def _trim_consumed(self) -> None:
        """XTRIM MINID to the oldest entry some group still needs: its oldest pending entry, or
        the one after its last delivered entry."""
        self._last_trim = time.monotonic()
        groups: Any = await self._redis.xinfo_groups(self._keys.events)
        floor: tuple[int, int] | None = None
        for group in groups:
            needed = _stream_id(text(group["last-delivered-id"]))
            if int(group["pending"]) > 0:
                summary: Any = await self._redis.xpending(self._keys.events, text(group["name"]))
                if summary["min"] is not None:
                    needed = min(needed, _stream_id(text(summary["min"])))
            floor = needed if floor is None else min(floor, needed)
        if floor is not None and floor > (0, 0):
            await self._redis.xtrim(
                self._keys.events, minid=f"{floor[0]}-{floor[1]}", approximate=False
            )

    async def _forget_idle_consumers(self) -> None:
        """Remove long-gone consumers with nothing pending, so the group does not grow with
        every restarted replica."""
        idle_limit = self._settings.claim_idle_ms * FORGET_AFTER_CLAIM_INTERVALS
        consumers: Any = await self._redis.xinfo_consumers(self._keys.events, self._settings.group)
        for consumer in consumers:
            name = text(consumer["name"])
            if (
                name != self._settings.name
                and int(consumer["pending"]) == 0
                and int(consumer["idle"]) > idle_limit
            ):
                await self._redis.xgroup_delconsumer(self._keys.events, self._settings.group, name)

    async def _deliveries(self, ids: Sequence[str]) -> dict[str, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(
                    self._keys.events, self._settings.group, min=entry_id, max=entry_id, count=1
                )
            replies = await pipe.execute()
        return {
            text(row["message_id"]): int(row["times_delivered"])
            for reply in replies
            for row in reply
        }

    async def _dead_letter(self, entry_id: str, fields: dict[bytes, bytes], why: str) -> str | None:
        """Move the entry to the dead letters; return the user it names (None: unreadable)."""
        reason = "malformed" if why.startswith("malformed") else "exhausted"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self._keys.dead_letters,
                {
                    **{k.decode(errors="replace"): v for k, v in fields.items()},
                    "id": entry_id,
                    "why": why,
                },
                maxlen=DEAD_LETTER_MAX_LENGTH,
                approximate=True,
            )
            pipe.xack(self._keys.events, self._settings.group, entry_id)
            await pipe.execute()
        DEAD_LETTERS.labels(reason).inc()
        log.error(
            "event moved to dead letters",
            extra={"entry": entry_id, "why": why, "stream": self._keys.dead_letters},
        )
        user = _named_user(fields.get(b"e", b""))
        if user is None:
            UNREPAIRED.labels("unreadable").inc()
            log.error(
                "dead letter names no readable user; left to the periodic check",
                extra={"entry": entry_id, "stream": self._keys.dead_letters},
            )
        return user

    async def _repair_dead(self, users: set[str]) -> None:
        """Repair the users of this batch's dead letters from PostgreSQL. A failure is logged
        and counted, never retried here: the entries are already acknowledged."""
        if not users or self._repair is None:
            return
        try:
            repaired = await self._repair(users)
        except Exception as exc:
            raise_if_cancelling()
            UNREPAIRED.labels("failed").inc(len(users))
            log.error(
                "repairing dead-lettered users failed; left to the periodic check",
                extra={"users": sorted(users), "error": str(exc)},
            )
            return
        if repaired:
            log.warning(
                "dead-lettered users repaired from PostgreSQL",
                extra={"users": sorted(users), "repaired": repaired},
            )

    async def _process(self, entries: list[Entry], *, check_deliveries: bool) -> None:
        if not entries:
            return
        RECEIVED.inc(len(entries))
        gone = [entry_id for entry_id, fields in entries if fields is None]
        if gone:
            # Trimmed from the stream before anyone applied it: nothing left to apply (the
            # ranking catches up from PostgreSQL on the next rebuild or reconcile).
            await self._redis.xack(self._keys.events, self._settings.group, *gone)
            log.warning("pending entries no longer in the stream", extra={"count": len(gone)})
        present = [(i, f) for i, f in entries if f is not None]
        board_keys = self._keys if self._asc is None else replace(self._keys, asc=self._asc())
        deliveries = await self._deliveries([i for i, _ in present]) if check_deliveries else {}
        valid: list[tuple[str, list[str]]] = []
        # The period of each valid entry's event (its keys: DESIGN decision 11).
        periods: dict[str, int] = {}
        dead_users: set[str] = set()
        for entry_id, fields in present:
            times = deliveries.get(entry_id, 0)
            user: str | None = None
            if times > self._settings.max_deliveries:
                user = await self._dead_letter(
                    entry_id, fields, f"exhausted: failed {times - 1} deliveries"
                )
            else:
                event, why = parse(fields.get(b"e", b""), self._keys.board)
                if event is None:
                    user = await self._dead_letter(entry_id, fields, f"malformed: {why}")
                else:
                    valid.append((entry_id, script_args(event, board_keys.asc)))
                    periods[entry_id] = event.period or 1
            if user is not None:
                dead_users.add(user)
        # Before the batch: acknowledged already, the dead letters' users must not wait on it.
        await self._repair_dead(dead_users)
        groups: dict[int, list[tuple[str, list[str]]]] = {}
        for item in valid:
            groups.setdefault(periods[item[0]], []).append(item)
        for period, items in sorted(groups.items()):
            await self._apply_all(items, board_keys.of_period(period))

    async def _apply_all(self, valid: list[tuple[str, list[str]]], keys: BoardKeys) -> None:
        """Apply the batch in one script; when the script refuses it, apply its events one by
        one so a single bad event does not hold back the others. A refused event stays
        pending: claimed again later, dead-lettered after max_deliveries."""
        try:
            await self._apply(valid, keys)
            return
        except ResponseError as exc:
            if _stream_lost(exc):
                raise
            if len(valid) == 1:
                self._failed(valid[0][0], exc)
                return
            log.warning("batch refused; applying its events one by one: %s", exc)
        for item in valid:
            try:
                await self._apply([item], keys)
            except ResponseError as exc:
                if _stream_lost(exc):
                    raise
                self._failed(item[0], exc)

    @staticmethod
    def _failed(entry_id: str, exc: ResponseError) -> None:
        FAILED.inc()
        log.error("event refused; it stays pending", extra={"entry": entry_id, "error": str(exc)})

    async def _apply(self, batch: Sequence[tuple[str, list[str]]], keys: BoardKeys) -> None:
        """Apply events of one period to that period's keys (the stream is the board's)."""
        if self._fault is not None:
            await self._fault([entry_id for entry_id, _ in batch])
        applied, seq, ready = await self._scripts.apply_events(
            keys,
            (event_args for _, event_args in batch),
            now_us=time.time_ns() // 1000,
            group=self._settings.group,
            entry_ids=[entry_id for entry_id, _ in batch],
        )
        APPLIED.inc(int(applied))
        if text(seq) != "0":
            PUBLISHED.inc()
        if not int(ready):
            self._on_not_ready()
