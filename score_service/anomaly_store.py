"""Flagged anomalies in PostgreSQL, read and reviewed by admins (AdminService.ReviewAnomaly
calls review). The ledger records them in the score transaction."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.audit import write_audit
from common.db import Conn, Pool
from common.errors import Reason, invalid, not_found

MAX_PAGE_SIZE = 500
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


def _encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{last_id}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith("a"):
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("page_token is not valid") from None


class AnomalyStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list_anomalies(
        self,
        board: str,
        *,
        user_id: str | None = None,
        include_reviewed: bool = False,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[AnomalyRecord], str]:
        """Newest first, one page; returns the records and the next page's token ('' at the end)."""
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise invalid(f"page_size must be between 0 and {MAX_PAGE_SIZE}")
        size = page_size or 50
        query = f"SELECT {_COLUMNS} FROM score_anomalies WHERE board_id = %s"
        params: list[object] = [board]
        if user_id is not None:
            query += " AND user_id = %s"
            params.append(user_id)
        if not include_reviewed:
            query += " AND reviewed_at IS NULL"
        if page_token:
            query += " AND id < %s"
            params.append(_decode_token(page_token))
        query += " ORDER BY id DESC LIMIT %s"
        params.append(size + 1)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        records = [_record(row) for row in rows[:size]]
        next_token = _encode_token(records[-1].id) if len(rows) > size else ""
        return records, next_token

    async def mark_reviewed(
        self, board: str, ids: Sequence[int], *, actor: str, request_id: str
    ) -> int:
        """Mark anomalies reviewed (audited); returns how many were open and are now reviewed."""
        if not ids or len(ids) > MAX_PAGE_SIZE:
            raise invalid(f"give between 1 and {MAX_PAGE_SIZE} anomaly ids")
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE score_anomalies SET reviewed_at = now() WHERE board_id = %s"
                " AND id = ANY(%s) AND reviewed_at IS NULL RETURNING id",
                (board, list(ids)),
            )
            changed = sorted(int(row[0]) for row in await cur.fetchall())  # type: ignore[call-overload]
            if changed:
                await _audit_review(conn, board, changed, actor=actor, request_id=request_id)
        return len(changed)

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
