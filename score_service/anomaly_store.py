"""Flagged anomalies in PostgreSQL, reviewed by admins (AdminService.ReviewAnomaly calls review;
ListAnomalies reads them through score_service.admin_queries). The ledger records them in the
score transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.audit import write_audit
from common.db import Conn, Pool
from common.errors import Reason, not_found

_COLUMNS = "id, board_id, user_id::text, kind, detail, ledger_entry_id, created_at, reviewed_at"


@dataclass(frozen=True)
class AnomalyRecord:
    id: int
    board_id: str
    user_id: str
    kind: str
    detail: dict[str, Any]
    ledger_entry_id: int | None
    created_at: datetime
    reviewed_at: datetime | None


class AnomalyStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def review(
        self, anomaly_id: int, *, actor: str, note: str, request_id: str
    ) -> tuple[AnomalyRecord, int]:
        """Mark one anomaly reviewed (audited, with the note when there is one); returns it and
        the audit row's id. Idempotent: one reviewed before is returned as it is, with audit id 0.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE score_anomalies SET reviewed_at = now()"
                f" WHERE id = %s AND reviewed_at IS NULL RETURNING {_COLUMNS}",
                (anomaly_id,),
            )
            row = await cur.fetchone()
            if row is not None:
                record = _record(row)
                audit_id = await _audit_review(
                    conn,
                    record.board_id,
                    [anomaly_id],
                    actor=actor,
                    request_id=request_id,
                    note=note,
                )
                return record, audit_id
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM score_anomalies WHERE id = %s", (anomaly_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise not_found(Reason.NOT_FOUND, f"no anomaly {anomaly_id}")
        return _record(row), 0


async def _audit_review(
    conn: Conn, board: str, ids: list[int], *, actor: str, request_id: str, note: str = ""
) -> int:
    detail: dict[str, object] = {"ids": ids}
    if note:
        detail["note"] = note
    return await write_audit(
        conn,
        actor=actor,
        action="anomaly.review",
        target=board,
        detail=detail,
        request_id=request_id,
    )


def _record(row: tuple[object, ...]) -> AnomalyRecord:
    detail = row[4]
    created, reviewed = row[6], row[7]
    assert isinstance(created, datetime)
    return AnomalyRecord(
        id=int(row[0]),  # type: ignore[call-overload]
        board_id=str(row[1]),
        user_id=str(row[2]),
        kind=str(row[3]),
        detail=detail if isinstance(detail, dict) else {},
        ledger_entry_id=int(row[5]) if row[5] is not None else None,  # type: ignore[call-overload]
        created_at=created,
        reviewed_at=reviewed if isinstance(reviewed, datetime) else None,
    )
