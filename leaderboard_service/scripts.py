"""The leaderboard's Lua scripts, each with the shared helpers prepended."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from common.redis_keys import BoardKeys
from common.redis_scripts import lua_text, script_source

# How many of the users a mover passed each rank move names (the "overtaken" pushes).
DEFAULT_MAX_PASSED = 5


def _source(name: str, asc: bool, **constants: int) -> str:
    """The script with the shared library of stored values and this service's entries.lua in
    front (common.redis_scripts)."""
    own = lua_text("leaderboard_service", "entries"), lua_text("leaderboard_service", name)
    return script_source(*own, asc=asc, **constants)


class Scripts:
    """Registered once per process; EVALSHA with a transparent reload after a SCRIPT FLUSH.
    `max_passed` bounds the users a rank move names (apply.lua's MAX_PASSED). These read and
    write a higher-is-better ranking; `of(keys)` gives the set for the keys' sort order (a
    lower-is-better board's scripts are loaded with `ASC = true`, see common/redis_values.py)."""

    def __init__(
        self, redis: aioredis.Redis, *, max_passed: int = DEFAULT_MAX_PASSED, asc: bool = False
    ) -> None:
        if max_passed < 0:
            raise ValueError("max_passed must not be negative")
        self._redis = redis
        self._max_passed = max_passed
        self.asc = asc
        self._other: Scripts | None = None
        self.apply: AsyncScript = redis.register_script(
            _source("apply", asc, MAX_PASSED=max_passed)
        )
        self.swap: AsyncScript = redis.register_script(_source("swap", asc))
        self.top: AsyncScript = redis.register_script(_source("top", asc))
        self.user_rank: AsyncScript = redis.register_script(_source("user_rank", asc))
        self.for_users: AsyncScript = redis.register_script(_source("for_users", asc))
        self.compare: AsyncScript = redis.register_script(_source("compare", asc))

    def of(self, keys: BoardKeys) -> Scripts:
        """The scripts for the keys' board (its sort order)."""
        if keys.asc == self.asc:
            return self
        if self._other is None:
            self._other = Scripts(self._redis, max_passed=self._max_passed, asc=not self.asc)
            self._other._other = self
        return self._other

    async def apply_events(
        self,
        keys: BoardKeys,
        events: Iterable[Sequence[Any]],
        *,
        now_us: int,
        group: str = "",
        entry_ids: Sequence[str] = (),
        rank_moves: bool = True,
    ) -> Any:
        """Run apply.lua on the keys' board with these events (each its script_args), as of
        `now_us`; `entry_ids` are the stream entries the consumer `group` acknowledges with them.
        Without `rank_moves` no rank move is published (a repair's writes). Returns the script's
        reply, [applied, seq, ready]."""
        batch = list(events)
        args: list[Any] = [keys.channel, str(now_us), group, len(batch)]
        for event in batch:
            args.extend(event)
        args.extend(entry_ids)
        return await self.of(keys).apply(keys=apply_keys(keys, rank_moves=rank_moves), args=args)


def apply_keys(keys: BoardKeys, *, rank_moves: bool = True) -> list[str]:
    """apply.lua's KEYS, in its order; the rank channel last, where rank moves are published
    (DESIGN decision 12), only with `rank_moves`."""
    names = [
        keys.ranking,
        keys.users,
        keys.top,
        keys.meta,
        keys.ready,
        keys.rebuild_lock,
        keys.touched,
        keys.events,
    ]
    return [*names, keys.rank_channel] if rank_moves else names


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
