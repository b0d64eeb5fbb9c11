"""Every revocation in force, in this process's memory, so checking a token costs a dict lookup
and no Redis round trip.

A task loads the whole list from Redis (keys.revoked), then follows the change feed
(keys.revocation_feed) with XREAD BLOCK from the id read in the same MULTI as the list, so no
change falls between the two. A revocation is applied here within one Redis round trip of
auth_service writing it (well under the documented bound of 1 second).

- Until the first complete load (the loaded marker present) the mirror refuses to decide:
  checks wait up to `wait_seconds`, then fail with UNAVAILABLE (fail closed).
- Redis unreachable (or not answering within `timeout_seconds`) after that: checks keep being
  answered from memory, and the task retries every `retry_seconds`, doing a full resync once
  Redis answers. A revocation made during the outage is durable in PostgreSQL; auth_service
  copies it to Redis within a fraction of a second of Redis answering again, so it takes effect
  here within about 1 second of the recovery.
- Redis wiped (the marker gone): nothing is forgotten (a revocation is never undone, only
  dropped once it expired); the mirror polls until auth_service has reloaded the list, then
  resyncs.
- A full resync also runs every `resync_seconds`, in case the feed was trimmed or lost.

Besides answering checks, the mirror tells subscribers (`subscribe`) of each revocation it
learns, as it learns it, so a process can end what a revoked token opened (the edge closes
its WebSockets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis

from common.auth.denylist import SESSION_FIELD, TOKEN_FIELD, USER_FIELD, parse_user_field
from common.errors import unavailable
from common.lifecycle import cancel_and_wait
from common.redis_keys import Keys

log = logging.getLogger("scoreboard.auth.revocations")
T = TypeVar("T")
_START_ID = b"0-0"
# Entries read from the feed per XREAD.
_BATCH = 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Revoked:
    """A revocation newly in force: a token (`token_id`), a login session (`session`), or every
    token of a subject issued before `issued_before` (epoch seconds). One field is set."""

    token_id: str = ""
    session: str = ""
    subject: str = ""
    issued_before: float = 0.0


Subscriber = Callable[[Revoked], object]


def _revoked(field: str) -> Revoked | None:
    if field.startswith(TOKEN_FIELD):
        return Revoked(token_id=field.removeprefix(TOKEN_FIELD))
    if field.startswith(SESSION_FIELD):
        return Revoked(session=field.removeprefix(SESSION_FIELD))
    user = parse_user_field(field)
    return None if user is None else Revoked(subject=user[0], issued_before=user[1])


class RevocationMirror:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        block_seconds: float = 1.0,
        poll_seconds: float = 0.1,
        retry_seconds: float = 0.25,
        timeout_seconds: float = 1.0,
        resync_seconds: float = 60.0,
        wait_seconds: float = 3.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._block_seconds = block_seconds
        self._poll_seconds = poll_seconds
        self._retry_seconds = retry_seconds
        self._timeout_seconds = timeout_seconds
        self._resync_seconds = resync_seconds
        self._wait_seconds = wait_seconds
        # Field ('t:<jti>' / 's:<sid>' / 'u:<sub>:<ms>') -> expiry, epoch seconds.
        self._revoked: dict[str, float] = {}
        # Subject -> (tokens issued before this are refused, until this expiry), the latest.
        self._users: dict[str, tuple[float, float]] = {}
        self._subscribers: list[Subscriber] = []
        self._ready = asyncio.Event()
        # The marker was present at the last resync (False after a wipe, until the reload).
        self._loaded = False
        # The last attempt to reach Redis failed (cleared by the next full resync).
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """A complete list has been loaded at least once."""
        return self._ready.is_set()

    @property
    def in_sync(self) -> bool:
        """Following Redis right now (not in an outage, not waiting for a reload)."""
        return self.ready and self._loaded and not self._failing

    def __len__(self) -> int:
        return len(self._revoked)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="revocation-mirror")

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` (on the event loop, synchronously: keep it short) with each
        revocation as it comes into force here; returns the function that unsubscribes."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def is_revoked(
        self, jti: str, session: str = "", subject: str = "", issued_at: float | None = None
    ) -> bool:
        """The token `jti`, its login session, or (given its subject and iat) every token its
        subject got before a ban, has been revoked."""
        if not self._ready.is_set():
            await self._wait_until_ready()
        return self.revoked(jti, session, subject, issued_at)

    def revoked(
        self, jti: str, session: str = "", subject: str = "", issued_at: float | None = None
    ) -> bool:
        """is_revoked from what is in memory now, without waiting for a first load."""
        now = time.time()
        if self._revoked.get(TOKEN_FIELD + jti, 0.0) > now:
            return True
        if session and self._revoked.get(SESSION_FIELD + session, 0.0) > now:
            return True
        user = self._users.get(subject) if subject and issued_at is not None else None
        return user is not None and user[1] > now and issued_at is not None and issued_at < user[0]

    async def _wait_until_ready(self) -> None:
        if self._failing:
            raise unavailable("token revocation cannot be checked right now")
        try:
            await asyncio.wait_for(self._ready.wait(), self._wait_seconds)
        except TimeoutError:
            raise unavailable("token revocation list is being loaded; try again") from None

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except (OSError, aioredis.RedisError, TimeoutError) as exc:
                if not self._failing:
                    log.warning(
                        "revocation mirror cannot reach Redis; answering from memory: %r",
                        exc,
                        extra={"revocations": len(self._revoked)},
                    )
                self._failing = True
                await asyncio.sleep(self._retry_seconds)

    async def _follow(self) -> None:
        """One full resync, then the feed until a resync is due (returns) or Redis fails."""
        last_id = await self._resync()
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + self._resync_seconds
        while loop.time() < resync_at:
            block = self._block_seconds if self._loaded else self._poll_seconds
            reply: Any = await self._bounded(
                self._redis.xread(
                    {self._keys.revocation_feed: last_id}, count=_BATCH, block=int(block * 1000)
                ),
                extra=block,
            )
            reloaded = False
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    field, expiry = fields.get(b"f"), fields.get(b"x")
                    if field is not None and expiry is not None:
                        self._merge(_text(field), int(expiry) / 1000)
                    elif b"reload" in fields:
                        reloaded = True
            if reloaded or not self._loaded:
                return

    async def _resync(self) -> bytes:
        """Merge the whole list into memory; returns the feed id it is current to."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(self._keys.denylist_loaded)
            pipe.xrevrange(self._keys.revocation_feed, count=1)
            pipe.hgetall(self._keys.revoked)
            replies: list[Any] = await self._bounded(pipe.execute())
        loaded, last, fields = replies
        for field, expiry in fields.items():
            name = _text(field)
            if name.startswith((TOKEN_FIELD, SESSION_FIELD, USER_FIELD)):
                self._merge(name, int(expiry) / 1000)
        self._prune()
        if self._failing:
            log.info("revocation mirror reached Redis again; resynced")
            self._failing = False
        was_loaded, self._loaded = self._loaded, bool(loaded)
        if self._loaded:
            self._ready.set()
        elif was_loaded:
            log.warning("revocation list is gone from Redis; keeping what is known until reload")
        last_id: bytes = last[0][0] if last else _START_ID
        return last_id

    def _merge(self, field: str, expiry: float) -> None:
        known = self._revoked.get(field, 0.0)
        if expiry <= known:
            return
        self._revoked[field] = expiry
        now = time.time()
        if known > now or expiry <= now:
            return  # already in force, or no longer
        revoked = _revoked(field)
        if revoked is None:
            return
        if revoked.subject:
            latest = self._users.get(revoked.subject)
            if latest is None or latest[1] <= now or latest[0] < revoked.issued_before:
                self._users[revoked.subject] = (revoked.issued_before, expiry)
        self._notify(revoked)

    def _notify(self, revoked: Revoked) -> None:
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(revoked)
            except Exception:
                log.exception("a revocation subscriber failed", extra={"revoked": str(revoked)})

    def _prune(self) -> None:
        now = time.time()
        for field in [f for f, expiry in self._revoked.items() if expiry <= now]:
            del self._revoked[field]
        for subject in [s for s, (_, expiry) in self._users.items() if expiry <= now]:
            del self._users[subject]

    async def _bounded(self, call: Awaitable[T], *, extra: float = 0.0) -> T:
        """A Redis call that takes too long counts as Redis unreachable (a paused or
        partitioned server never answers)."""
        return await asyncio.wait_for(call, self._timeout_seconds + extra)
