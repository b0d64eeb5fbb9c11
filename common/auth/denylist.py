"""The revocation list in Redis: revoked access tokens (by jti), revoked login sessions (by
sid, the refresh-token family: every access token of the session at once) and revoked users
(every token of a subject issued before a time: a ban).

PostgreSQL holds it durably (auth_service). Redis holds a copy every verifier can read whole:
a HASH of field -> expiry, a STREAM announcing each change, and a marker saying the HASH holds
everything (see common.redis_keys). auth_service writes it through this class; each verifier
process keeps it in memory (common.auth.revocation_mirror) and never asks Redis per request.

A field is only ever added or given a later expiry, never removed before it expires: a
revocation cannot be undone by a write racing with another.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from common.redis_keys import Keys

TOKEN_FIELD = "t:"
SESSION_FIELD = "s:"
# "u:<subject>:<ms>": every token of the subject issued (iat) before that time, epoch ms. The
# time is part of the name, so a later revocation of the same subject is a field of its own.
USER_FIELD = "u:"
# A user revocation is kept this long: longer than any access token issued before it lives.
USER_REVOCATION_SECONDS = 86400.0
# Present in a loaded hash, so a hash lost on its own (evicted, deleted) is noticed.
SENTINEL_FIELD = "_"
# Entries outlive the token by this much (clock skew, verifier leeway).
EXPIRY_MARGIN_SECONDS = 60.0
# The change feed keeps about this many entries: a verifier further behind resyncs anyway.
FEED_MAXLEN = 10_000
_RELOAD_CHUNK = 1000

# KEYS: revoked hash, feed. ARGV: feed maxlen, then (field, expiry ms) pairs. A field is written
# (and announced) only when it is new or expires later than the stored one, so copying the same
# revocations again changes nothing and announces nothing.
_ADD = """
local added = 0
for i = 2, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if not current or tonumber(current) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'f', ARGV[i], 'x', ARGV[i + 1])
    added = added + 1
  end
end
return added
"""

# KEYS: staging hash, revoked hash, loaded marker, feed. ARGV: feed maxlen. Keeps what was
# written to the live hash while the reload read PostgreSQL (the later expiry wins), replaces
# the live hash, sets the marker and announces the reload: one atomic step, so the marker never
# exists without the data.
_SWAP = """
local live = redis.call('HGETALL', KEYS[2])
for i = 1, #live, 2 do
  local staged = redis.call('HGET', KEYS[1], live[i])
  if not staged or tonumber(staged) < tonumber(live[i + 1]) then
    redis.call('HSET', KEYS[1], live[i], live[i + 1])
  end
end
redis.call('HSET', KEYS[1], '_', '1')
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], '1')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[1], '*', 'reload', '1')
return 1
"""

# KEYS: revoked hash. ARGV: now (ms), then fields. Deletes those still expired (a field given
# a later expiry meanwhile stays).
_PRUNE = """
local removed = 0
for i = 2, #ARGV do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if current and ARGV[i] ~= '_' and tonumber(current) < tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""

Entries = Iterable[tuple[str, datetime]]
# (subject, tokens issued before this time are refused)
UserEntries = Iterable[tuple[str, datetime]]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def token_field(jti: str) -> str:
    return TOKEN_FIELD + jti


def session_field(sid: str) -> str:
    return SESSION_FIELD + sid


def user_field(subject: str, before: datetime) -> str:
    return f"{USER_FIELD}{subject}:{int(before.timestamp() * 1000)}"


def parse_user_field(field: str) -> tuple[str, float] | None:
    """(subject, issued-before time in epoch seconds) of a user field; None if malformed."""
    subject, _, before = field.removeprefix(USER_FIELD).rpartition(":")
    if not subject or not before.isdigit():
        return None
    return subject, int(before) / 1000


def _expiry_ms(expires: datetime) -> int:
    return int((expires.timestamp() + EXPIRY_MARGIN_SECONDS) * 1000)


def _fields(tokens: Entries, sessions: Entries, users: UserEntries = ()) -> list[tuple[str, int]]:
    return (
        [(token_field(jti), _expiry_ms(exp)) for jti, exp in tokens]
        + [(session_field(sid), _expiry_ms(exp)) for sid, exp in sessions]
        + [
            (user_field(sub, before), int((before.timestamp() + USER_REVOCATION_SECONDS) * 1000))
            for sub, before in users
        ]
    )


class Denylist:
    """auth_service's writer of the Redis copy."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._add = redis.register_script(_ADD)
        self._swap = redis.register_script(_SWAP)
        self._prune = redis.register_script(_PRUNE)

    async def add(self, tokens: Entries, sessions: Entries = (), users: UserEntries = ()) -> int:
        """Copy committed revocations (each with the expiry of the newest token it covers);
        returns how many were new to Redis."""
        fields = _fields(tokens, sessions, users)
        if not fields:
            return 0
        args: list[str | int] = [FEED_MAXLEN]
        for field, expiry in fields:
            args += [field, expiry]
        added = await self._add(keys=[self._keys.revoked, self._keys.revocation_feed], args=args)
        await self._add_legacy(fields)
        return int(added)

    async def reload(self, tokens: Entries, sessions: Entries, users: UserEntries = ()) -> None:
        """Replace the copy with these revocations (all of PostgreSQL's) and set the marker,
        atomically; entries written meanwhile are kept."""
        fields = _fields(tokens, sessions, users)
        staging = self._keys.revoked_staging
        await self._redis.delete(staging)
        for start in range(0, len(fields), _RELOAD_CHUNK):
            chunk = fields[start : start + _RELOAD_CHUNK]
            await self._redis.hset(staging, mapping=dict(chunk))
        await self._swap(
            keys=[
                staging,
                self._keys.revoked,
                self._keys.denylist_loaded,
                self._keys.revocation_feed,
            ],
            args=[FEED_MAXLEN],
        )
        await self._add_legacy(fields)

    async def is_loaded(self) -> bool:
        """The marker and the hash are both there (either can be lost: a wipe, an eviction)."""
        found = await self._redis.exists(self._keys.denylist_loaded, self._keys.revoked)
        return int(found) == 2

    async def prune(self) -> int:
        """Delete expired fields (verifiers drop them from memory on their own)."""
        now_ms = int(time.time() * 1000)
        expired: list[str] = []
        removed = 0
        async for field, value in self._redis.hscan_iter(self._keys.revoked, count=1000):
            name = _text(field)
            if name != SENTINEL_FIELD and int(value) < now_ms:
                expired.append(name)
            if len(expired) >= _RELOAD_CHUNK:
                removed += await self._prune_fields(now_ms, expired)
                expired.clear()
        if expired:
            removed += await self._prune_fields(now_ms, expired)
        return removed

    async def eviction_policy(self) -> str:
        """Redis's maxmemory-policy (CONFIG GET; managed Redis may refuse it: ResponseError)."""
        reply: dict[Any, Any] = await self._redis.config_get("maxmemory-policy")
        for name, value in reply.items():
            if _text(name) == "maxmemory-policy":
                return _text(value)
        return ""

    async def _prune_fields(self, now_ms: int, fields: list[str]) -> int:
        return int(await self._prune(keys=[self._keys.revoked], args=[now_ms, *fields]))

    async def _add_legacy(self, fields: list[tuple[str, int]]) -> None:
        """One key per revocation with a TTL, for verifiers of the previous release (which know
        no user revocations)."""
        fields = [(f, x) for f, x in fields if not f.startswith(USER_FIELD)]
        if not fields:
            return
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for field, expiry in fields:
                kind, _, name = field.partition(":")
                key = (
                    self._keys.denied_token(name)
                    if kind + ":" == TOKEN_FIELD
                    else self._keys.denied_session(name)
                )
                pipe.set(key, "1", px=max(expiry - now_ms, 1))
            await pipe.execute()
