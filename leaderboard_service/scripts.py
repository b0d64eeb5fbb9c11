"""The leaderboard's Lua scripts, each with the shared helpers prepended."""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

# How many of the users a mover passed each rank move names (the "overtaken" pushes).
DEFAULT_MAX_PASSED = 5


def _source(name: str, preamble: str = "") -> str:
    folder = resources.files("leaderboard_service") / "lua"
    return (
        preamble + (folder / "common.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()
    )


class Scripts:
    """Registered once per process; EVALSHA with a transparent reload after a SCRIPT FLUSH.
    `max_passed` bounds the users a rank move names (apply.lua's MAX_PASSED)."""

    def __init__(self, redis: aioredis.Redis, *, max_passed: int = DEFAULT_MAX_PASSED) -> None:
        if max_passed < 0:
            raise ValueError("max_passed must not be negative")
        self.apply: AsyncScript = redis.register_script(
            _source("apply", f"local MAX_PASSED = {int(max_passed)}\n")
        )
        self.swap: AsyncScript = redis.register_script(_source("swap"))
        self.top: AsyncScript = redis.register_script(_source("top"))
        self.user_rank: AsyncScript = redis.register_script(_source("user_rank"))
        self.for_users: AsyncScript = redis.register_script(_source("for_users"))
        self.compare: AsyncScript = redis.register_script(_source("compare"))


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
