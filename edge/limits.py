"""Per-caller request limits of the edge's routes other than completions (issue 16, item 7):
shared by every replica through Redis; while Redis cannot answer, each replica keeps limiting in
memory. A refusal is 429 with Retry-After and the JSON error envelope."""

from __future__ import annotations

import redis.asyncio as aioredis

from common.errors import Reason
from common.ratelimit import Decision
from edge.bodies import HttpError
from edge.state import EdgeState

WINDOW_SECONDS = 60


async def decide(state: EdgeState, name: str, subject: str, limit: int) -> Decision:
    """Count one request of `subject` against `limit` per minute. Policy when Redis is
    unreachable or out of its time budget: keep limiting, per replica, in memory (each replica
    then allows up to the limit), rather than refusing everyone while Redis restarts."""
    try:
        return await state.limiter.hit(name, subject, limit=limit, window_seconds=WINDOW_SECONDS)
    except (OSError, aioredis.RedisError) as exc:
        return state.local_limiter.stand_in(
            name, subject, limit=limit, window_seconds=WINDOW_SECONDS, error=exc
        )


async def enforce(state: EdgeState, name: str, subject: str, limit: int) -> None:
    """decide(), then refuse the request with 429 when the limit is used up (0: no limit)."""
    if limit <= 0:
        return
    decision = await decide(state, name, subject, limit)
    if not decision.allowed:
        retry = decision.retry_after_seconds
        raise HttpError(
            429,
            Reason.RATE_LIMITED,
            f"Rate limit exceeded. Try again in {retry} seconds.",
            {"Retry-After": str(retry)},
        )
