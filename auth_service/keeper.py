"""Keeps the Redis copy of the revocation list in step with PostgreSQL, and purges expired rows.

- The copy is missing (Redis restarted or wiped, the hash evicted): it is rebuilt from
  PostgreSQL and its marker set in one atomic step, within a fraction of a second; verifiers
  keep what they knew meanwhile and resync after the reload.
- A revocation whose Redis write failed (Redis unreachable when it was committed) is copied
  from PostgreSQL at the first tick Redis answers again (every `interval`), so it reaches every
  verifier within about a second of the recovery. Recent revocations are also re-copied every
  `sync_every` seconds, in case another replica's write was lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TypeVar

import psycopg
import redis.asyncio as aioredis

from auth_service.store import AuthStore
from common.auth.denylist import Denylist, Entries

log = logging.getLogger("scoreboard.auth.keeper")
T = TypeVar("T")
# Revocations committed by transactions that started before the previous sync still count.
_SYNC_OVERLAP = timedelta(seconds=60)
_RELOAD_TIMEOUT = 30.0
_ERRORS = (OSError, aioredis.RedisError, psycopg.Error, TimeoutError)


class DenylistKeeper:
    def __init__(
        self,
        store: AuthStore,
        denylist: Denylist,
        *,
        interval: float = 0.25,
        sync_every: float = 5.0,
        prune_every: float = 60.0,
        purge_every: float = 3600.0,
        timeout_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._denylist = denylist
        self._interval = interval
        self._sync_every = sync_every
        self._prune_every = prune_every
        self._purge_every = purge_every
        self._timeout_seconds = timeout_seconds
        # A write to Redis failed (or Redis was unreachable): sync at the next tick that works.
        self._dirty = False
        self._synced_to: datetime | None = None

    async def publish(self, tokens: Entries, sessions: Entries = ()) -> None:
        """Copy revocations just committed to PostgreSQL to Redis. When Redis cannot take them,
        they are copied from PostgreSQL as soon as it can (the caller never waits long)."""
        try:
            await self._bounded(self._denylist.add(tokens, sessions))
        except (OSError, aioredis.RedisError, TimeoutError) as exc:
            self._dirty = True
            log.warning("revocation not in Redis yet (copied once Redis answers): %r", exc)

    async def run(self) -> None:
        last_purge = last_prune = 0.0
        last_sync = time.monotonic()
        failing = False
        while True:
            try:
                if not await self._bounded(self._denylist.is_loaded()):
                    await self._reload()
                    last_sync = time.monotonic()
                elif self._dirty or time.monotonic() - last_sync >= self._sync_every:
                    await self._sync()
                    last_sync = time.monotonic()
                if time.monotonic() - last_prune >= self._prune_every:
                    await self._bounded(self._denylist.prune())
                    last_prune = time.monotonic()
                if time.monotonic() - last_purge >= self._purge_every:
                    await self._store.purge_expired()
                    last_purge = time.monotonic()
                if failing:
                    log.info("denylist keeper reaches Redis and PostgreSQL again")
                failing = False
            except _ERRORS as exc:
                self._dirty = True
                if not failing:
                    log.warning("denylist keeper cannot reach Redis or PostgreSQL: %r", exc)
                failing = True
            await asyncio.sleep(self._interval)

    async def _reload(self) -> None:
        self._dirty = False
        revocations = await self._store.revocations()
        try:
            # A large list takes a while to write: a longer bound than single calls get.
            await asyncio.wait_for(
                self._denylist.reload(revocations.tokens, revocations.sessions, revocations.users),
                _RELOAD_TIMEOUT,
            )
        except BaseException:
            self._dirty = True
            raise
        self._synced_to = revocations.read_at
        log.info(
            "denylist cache loaded",
            extra={"tokens": len(revocations.tokens), "sessions": len(revocations.sessions)},
        )

    async def _sync(self) -> None:
        since = None if self._synced_to is None else self._synced_to - _SYNC_OVERLAP
        self._dirty = False
        revocations = await self._store.revocations(since)
        try:
            added = await self._bounded(
                self._denylist.add(revocations.tokens, revocations.sessions, revocations.users)
            )
        except BaseException:
            self._dirty = True
            raise
        self._synced_to = revocations.read_at
        if added:
            log.info("revocations copied to Redis from PostgreSQL", extra={"added": added})

    async def _bounded(self, call: Awaitable[T]) -> T:
        # A paused or partitioned Redis never answers: give up and count it as unreachable.
        return await asyncio.wait_for(call, self._timeout_seconds)
