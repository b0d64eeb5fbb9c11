"""Admin reads: one user's ledger, the audit log, flagged anomalies. Newest first, paged by id
(keyset pagination: a page is as cheap at the millionth entry as at the first)."""

from __future__ import annotations

from datetime import datetime

import orjson

from common.db import Pool
from common.timestamps import timestamp_pb
from score_service.admin_store import ENTRY_COLUMNS, as_int, entry_pb
from scoreboard.admin.v1 import admin_service_pb2 as pb


def _json(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class AdminQueries:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def _newest_first(
        self,
        select: str,
        params: tuple[object, ...],
        *,
        before: int | None,
        limit: int,
        id_column: str = "id",
    ) -> list[tuple[object, ...]]:
        """The rows of `select` (a SELECT ending in its WHERE conditions) with an id below
        `before` (any id when None), newest first, at most `limit`: one keyset page."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"{select} AND (%s::bigint IS NULL OR {id_column} < %s)"
                f" ORDER BY {id_column} DESC LIMIT %s",
                (*params, before, before, limit),
            )
            return await cur.fetchall()

    async def ledger(
        self, board: str, user_id: str, *, before: int | None, limit: int
    ) -> list[pb.LedgerEntry]:
        rows = await self._newest_first(
            f"SELECT {ENTRY_COLUMNS} FROM user_actions e WHERE e.user_id = %s AND e.board_id = %s",
            (user_id, board),
            before=before,
            limit=limit,
            id_column="e.id",
        )
        return [entry_pb(row) for row in rows]

    async def audit_log(
        self, *, actor: str, action: str, target: str, before: int | None, limit: int
    ) -> list[pb.AuditEntry]:
        rows = await self._newest_first(
            "SELECT id, actor, action, target, detail, request_id, created_at FROM audit_log"
            " WHERE (%s = '' OR actor = %s) AND (%s = '' OR action = %s)"
            " AND (%s = '' OR target = %s)",
            (actor, actor, action, action, target, target),
            before=before,
            limit=limit,
        )
        result = []
        for audit_id, who, what, target_, detail, request_id, created in rows:
            assert isinstance(created, datetime)
            result.append(
                pb.AuditEntry(
                    audit_id=as_int(audit_id),
                    actor=str(who),
                    action=str(what),
                    target=str(target_ or ""),
                    detail_json=_json(detail),
                    request_id=str(request_id or ""),
                    create_time=timestamp_pb(created),
                )
            )
        return result

    async def anomalies(
        self, *, user_id: str, include_reviewed: bool, before: int | None, limit: int
    ) -> list[pb.Anomaly]:
        rows = await self._newest_first(
            "SELECT id, board_id, user_id::text, kind, detail, ledger_entry_id, created_at,"
            " reviewed_at FROM score_anomalies"
            " WHERE (%s OR reviewed_at IS NULL) AND (%s = '' OR user_id::text = %s)",
            (include_reviewed, user_id, user_id),
            before=before,
            limit=limit,
        )
        result = []
        for anomaly_id, board, user, kind, detail, entry_id, created, reviewed in rows:
            assert isinstance(created, datetime)
            message = pb.Anomaly(
                anomaly_id=as_int(anomaly_id),
                board_id=str(board),
                user_id=str(user),
                kind=str(kind),
                detail_json=_json(detail),
                ledger_entry_id=as_int(entry_id or 0),
                create_time=timestamp_pb(created),
            )
            if isinstance(reviewed, datetime):
                message.review_time.CopyFrom(timestamp_pb(reviewed))
            result.append(message)
        return result
