"""The periodic purge: idempotency keys older than the retention (48 h by default; they are
promised for at least 24 h) and tickets that expired more than the ticket retention ago.

Deletes run in small batches, each its own short transaction, and skip rows another replica is
deleting, so any number of score_service replicas may purge at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass

from prometheus_client import Counter

from common.db import Pool
from score_service.config import PurgeSettings

log = logging.getLogger("scoreboard.purge")

PURGED = Counter("scoreboard_score_purged_total", "Rows removed by the purge.", ["table"])

_KEYS_SQL = (
    "DELETE FROM idempotency_keys WHERE (caller, key) IN ("
    " SELECT caller, key FROM idempotency_keys"
    " WHERE created_at < now() - make_interval(secs => %s)"
    " LIMIT %s FOR UPDATE SKIP LOCKED)"
)
_TICKETS_SQL = (
    "DELETE FROM action_tickets WHERE id IN ("
    " SELECT id FROM action_tickets WHERE expires_at < now() - make_interval(secs => %s)"
    " LIMIT %s FOR UPDATE SKIP LOCKED)"
)


@dataclass(frozen=True)
class PurgeResult:
    idempotency_keys: int
    tickets: int


class Purger:
    def __init__(self, pool: Pool, settings: PurgeSettings) -> None:
        self._pool = pool
        self._settings = settings

    async def run(self) -> None:
        while True:
            try:
                result = await self.purge_once()
                if result.idempotency_keys or result.tickets:
                    log.info("purged", extra=asdict(result))
            except Exception as exc:  # a failed purge is retried at the next interval
                log.warning("purge failed; will retry: %r", exc)
            await asyncio.sleep(self._settings.interval_seconds)

    async def purge_once(self) -> PurgeResult:
        keys = await self._delete_all(
            "idempotency_keys", _KEYS_SQL, self._settings.idempotency_retention_hours * 3600
        )
        tickets = await self._delete_all(
            "action_tickets", _TICKETS_SQL, self._settings.ticket_retention_hours * 3600
        )
        return PurgeResult(keys, tickets)

    async def _delete_all(self, table: str, statement: str, age_seconds: float) -> int:
        total = 0
        while True:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(statement, (age_seconds, self._settings.batch_size))
                deleted = cur.rowcount
            total += deleted
            PURGED.labels(table).inc(deleted)
            if deleted < self._settings.batch_size:
                return total
