"""The faults, each a function that puts it in place and returns once it is over (the moment
recovery is measured from). They run while the load and the viewers keep going."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.faults.traffic import RESET

if TYPE_CHECKING:
    from bench.faults.suite import Suite

# What a fault returns: notes for the report (empty when there is nothing to say).
Fault = Callable[["Suite"], Awaitable[list[str]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    how: str
    fault: Fault
    # Outcomes besides success and 503 that the fault makes unavoidable.
    also_allowed: frozenset[str] = frozenset()
    needs_own_postgres: bool = False


async def _nothing(suite: Suite) -> list[str]:
    return []


async def _redis_paused(suite: Suite) -> list[str]:
    suite.rig.pause_redis()
    try:
        await asyncio.sleep(suite.options.pause_seconds)
    finally:
        suite.rig.resume_redis()
    return []


async def _redis_slow_then_black_holed(suite: Suite) -> list[str]:
    proxy = suite.rig.proxy
    proxy.set_delay(0.2)
    try:
        await asyncio.sleep(suite.options.pause_seconds)
    finally:
        proxy.set_delay(0.0)
    proxy.black_hole()
    try:
        await asyncio.sleep(suite.options.pause_seconds)
    finally:
        proxy.forward()
    return []


async def _postgres_restarted(suite: Suite) -> list[str]:
    await asyncio.to_thread(suite.rig.restart_postgres_immediately)
    return []


def _killed(name: str) -> Fault:
    async def fault(suite: Suite) -> list[str]:
        index, argv, env = suite.rig.kill(name)
        await asyncio.sleep(suite.options.down_seconds)
        suite.rig.restart(name, index, argv, env)
        return []

    return fault


async def _redis_restarted_empty(suite: Suite) -> list[str]:
    await asyncio.to_thread(suite.rig.restart_redis_empty)
    return []


async def _revoked_during_outage(suite: Suite) -> list[str]:
    """A player signs in; Redis pauses; the player logs out; Redis comes back. The logout must
    hold: its token refused after the recovery, and from then on."""
    player = await suite.new_player("revoked")
    if await suite.token_status(player.token) != 200:
        return ["the new player's token was refused before the logout"]
    suite.rig.pause_redis()
    try:
        status = await suite.logout(player)
        await asyncio.sleep(suite.options.pause_seconds)
    finally:
        suite.rig.resume_redis()
    suite.revoke(player.token)
    if status == 200:
        return ["logout during the pause: 200"]
    # Not acknowledged: the player would try again, and must then be signed out.
    again = await suite.logout(player)
    return [f"logout during the pause: {status}; again after it: {again}"]


ALL = (
    Scenario("baseline (no fault)", "load and viewers only", _nothing),
    Scenario("Redis paused", "SIGSTOP, then SIGCONT, of redis-server", _redis_paused),
    Scenario(
        "Redis link slow, then black-holed",
        "TCP proxy between the services and Redis: 200 ms each way, then nothing through",
        _redis_slow_then_black_holed,
    ),
    Scenario(
        "PostgreSQL restarted",
        "pg_ctl restart -m immediate",
        _postgres_restarted,
        needs_own_postgres=True,
    ),
    *(
        Scenario(
            f"{name} killed",
            "SIGKILL mid-load, started again",
            _killed(name),
            also_allowed=frozenset({RESET}) if name == "edge" else frozenset(),
        )
        for name in ("leaderboard_service", "score_service", "stream_service", "edge")
    ),
    Scenario(
        "Redis restarted empty", "stopped, started again with no data", _redis_restarted_empty
    ),
    Scenario(
        "revocation during a Redis outage",
        "logout while Redis is paused",
        _revoked_during_outage,
    ),
)

# Short names for --scenarios.
KEYS = {
    "baseline": ALL[0],
    "redis-pause": ALL[1],
    "redis-link": ALL[2],
    "pg-restart": ALL[3],
    "kill-leaderboard": ALL[4],
    "kill-score": ALL[5],
    "kill-stream": ALL[6],
    "kill-edge": ALL[7],
    "redis-empty": ALL[8],
    "revocation": ALL[9],
}
