"""The audit trail of admin acts (the audit_log table), written in the transaction of the act
it records, by every service that lets admins act."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from common.db import Conn


async def write_audit(
    conn: Conn,
    *,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, object],
    request_id: str,
) -> int:
    """Insert one audit row; return its id."""
    cur = await conn.execute(
        "INSERT INTO audit_log (actor, action, target, detail, request_id)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (actor, action, target, orjson.dumps(dict(detail)).decode(), request_id),
    )
    row = await cur.fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]
