"""The outbox backlog as gauges, sampled by every score_service replica: how many committed
score changes wait to be relayed, and how long the oldest has waited. A relay that stalls shows
here long before the ranking looks stale."""

from __future__ import annotations

from prometheus_client import Gauge

from common.db import Pool
from score_service.relay import BACKLOG

OLDEST = Gauge(
    "scoreboard_outbox_oldest_seconds", "Age of the oldest outbox row (0 when it is empty)."
)
# Counting is capped so a huge backlog cannot make the sample itself slow.
COUNT_CAP = 1_000_000


async def sample_outbox(pool: Pool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT %s) AS capped),"
            " coalesce(extract(epoch FROM clock_timestamp() -"
            " (SELECT created_at FROM outbox ORDER BY id LIMIT 1)), 0)::float8",
            (COUNT_CAP,),
        )
        row = await cur.fetchone()
    assert row is not None
    count, oldest = row
    BACKLOG.set(float(count))  # type: ignore[arg-type]
    OLDEST.set(float(oldest))  # type: ignore[arg-type]
