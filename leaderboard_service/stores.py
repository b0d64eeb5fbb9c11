"""Where the rankings live, as the keeper and the query servicer both reach them: PostgreSQL (the
source of truth), Redis with the ranking scripts and the key layout, and the boards served."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from common.db import Pool
from common.redis_keys import Keys
from leaderboard_service.scripts import Scripts


@dataclass(frozen=True)
class Stores:
    pool: Pool
    redis: aioredis.Redis
    scripts: Scripts
    keys: Keys
    # The boards named in the settings (the first is the default); more come from the book.
    boards: tuple[str, ...]
