"""The leaderboard's Lua scripts, each with the shared helpers prepended."""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def _source(name: str) -> str:
    folder = resources.files("leaderboard_service") / "lua"
    return (folder / "common.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class Scripts:
    """Registered once per process; EVALSHA with a transparent reload after a SCRIPT FLUSH."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.apply: AsyncScript = redis.register_script(_source("apply"))
        self.swap: AsyncScript = redis.register_script(_source("swap"))
        self.top: AsyncScript = redis.register_script(_source("top"))
        self.user_rank: AsyncScript = redis.register_script(_source("user_rank"))
        self.for_users: AsyncScript = redis.register_script(_source("for_users"))
        self.compare: AsyncScript = redis.register_script(_source("compare"))


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
