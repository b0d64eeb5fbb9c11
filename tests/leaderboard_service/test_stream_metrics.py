"""The stream lag gauges count what the group has really not been delivered, not Redis's read
counter: a group whose counter is off (XGROUP SETID with a wrong ENTRIESREAD makes one, as
Redis itself does in some histories) must not page anyone for a lag it does not have."""

from __future__ import annotations

from prometheus_client import REGISTRY

from common.redis_keys import Keys
from leaderboard_service.stream_metrics import sample_stream
from tests.support.servers import redis_client

GROUP = "leaderboard"


def _gauge(name: str, board: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"board": board})


async def test_lag_counts_undelivered_entries_whatever_the_read_counter_says(
    redis_url: str, run_prefix: str
) -> None:
    keys = Keys(f"{run_prefix}lag:").board("default")
    async with redis_client(redis_url) as redis:
        for n in range(5):
            await redis.xadd(keys.events, {"n": str(n)})
        await redis.xgroup_create(keys.events, GROUP, id="0")
        await redis.xreadgroup(GROUP, "c1", {keys.events: ">"}, count=3)
        await sample_stream(redis, keys, GROUP)
        assert _gauge("scoreboard_stream_lag_entries", keys.board) == 2
        assert (_gauge("scoreboard_stream_lag_seconds", keys.board) or 0) >= 0
        assert _gauge("scoreboard_stream_pending_entries", keys.board) == 3

        # Everything delivered, but the read counter says nothing was read.
        await redis.xreadgroup(GROUP, "c1", {keys.events: ">"})
        await redis.xgroup_setid(keys.events, GROUP, "$", entries_read=0)
        [info] = await redis.xinfo_groups(keys.events)
        assert int(info["lag"]) == 5  # what Redis reports
        await sample_stream(redis, keys, GROUP)
        assert _gauge("scoreboard_stream_lag_entries", keys.board) == 0
        assert _gauge("scoreboard_stream_lag_seconds", keys.board) == 0

        # New entries count again, exactly.
        for n in range(4):
            await redis.xadd(keys.events, {"n": str(n)})
        await sample_stream(redis, keys, GROUP)
        assert _gauge("scoreboard_stream_lag_entries", keys.board) == 4
