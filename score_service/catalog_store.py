"""Reading and managing the action catalog in PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import orjson
from psycopg import errors

from common.db import Conn, Pool
from common.errors import Reason, conflict, invalid, not_found
from score_service.catalog import COLUMNS, CatalogAction, cooldown_end
from scoreboard.score.v1 import score_service_pb2 as pb


class CatalogStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list(
        self, board: str, *, user_id: str | None, include_inactive: bool
    ) -> list[pb.Action]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM actions WHERE board_id = %s"
                + ("" if include_inactive else " AND active")
                + " ORDER BY base_points * difficulty_multiplier, id",
                (board,),
            )
            actions = [CatalogAction.from_row(r) for r in await cur.fetchall()]
            usage: dict[str, tuple[int, datetime | None]] = {}
            cur = await conn.execute("SELECT clock_timestamp(), (now() AT TIME ZONE 'UTC')::date")
            clock = await cur.fetchone()
            assert clock is not None
            now, today = clock
            if user_id is not None:
                cur = await conn.execute(
                    "SELECT action_id, CASE WHEN day = %s THEN day_count ELSE 0 END, last_at"
                    " FROM action_stats WHERE board_id = %s AND user_id = %s",
                    (today, board, user_id),
                )
                usage = {str(r[0]): (int(r[1]), r[2]) for r in await cur.fetchall()}  # type: ignore[call-overload, misc]
        result = []
        for action in actions:
            if user_id is None:
                result.append(action.to_pb())
                continue
            count, last = usage.get(action.action_id, (0, None))
            end = cooldown_end(action, last)
            available = end if end is not None and isinstance(now, datetime) and end > now else None
            result.append(
                action.to_pb(
                    remaining_today=max(0, action.daily_limit - count), available_at=available
                )
            )
        return result

    async def create(self, action: CatalogAction, *, actor: str, request_id: str) -> CatalogAction:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await _check_boards(conn, action)
                await conn.execute(
                    f"INSERT INTO actions ({COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    _values(action),
                )
                await _audit(conn, actor, "action.create", action, request_id, before=None)
        except errors.UniqueViolation:
            raise conflict(Reason.ACTION_EXISTS, f"action {action.action_id} exists") from None
        return action

    async def update(self, action: CatalogAction, *, actor: str, request_id: str) -> CatalogAction:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM actions WHERE id = %s AND board_id = %s FOR UPDATE",
                (action.action_id, action.board_id),
            )
            row = await cur.fetchone()
            if row is None:
                raise not_found(Reason.ACTION_NOT_FOUND, f"no action {action.action_id}")
            before = CatalogAction.from_row(row)
            await _check_boards(conn, action)
            cur = await conn.execute(
                "UPDATE actions SET name = %s, description = %s, base_points = %s,"
                " difficulty_multiplier = %s, daily_limit = %s, cooldown_seconds = %s,"
                " requires_ticket = %s, min_duration_seconds = %s, active = %s, boards = %s,"
                " updated_at = now() WHERE id = %s AND board_id = %s",
                (*_values(action)[2:], action.action_id, action.board_id),
            )
            if cur.rowcount != 1:
                raise not_found(Reason.ACTION_NOT_FOUND, f"no action {action.action_id}")
            await _audit(conn, actor, "action.update", action, request_id, before=before)
        return action


def _values(a: CatalogAction) -> tuple[object, ...]:
    return (
        a.action_id,
        a.board_id,
        a.name,
        a.description,
        a.base_points,
        a.difficulty_multiplier,
        a.daily_limit,
        a.cooldown_seconds,
        a.requires_ticket,
        a.min_duration_seconds,
        a.active,
        list(a.boards),
    )


def _definition(a: CatalogAction) -> dict[str, object]:
    return {
        "name": a.name,
        "description": a.description,
        "base_points": a.base_points,
        "difficulty_multiplier": str(a.difficulty_multiplier),
        "points": a.points,
        "daily_limit": a.daily_limit,
        "cooldown_seconds": a.cooldown_seconds,
        "requires_ticket": a.requires_ticket,
        "min_duration_seconds": a.min_duration_seconds,
        "active": a.active,
        "boards": list(a.boards),
    }


async def _check_boards(conn: Conn, action: CatalogAction) -> None:
    """The further boards must exist (INVALID_ARGUMENT otherwise)."""
    if not action.boards:
        return
    cur = await conn.execute(
        "SELECT b FROM unnest(%s::text[]) AS b WHERE b NOT IN (SELECT id FROM boards)",
        (list(action.boards),),
    )
    missing = [str(row[0]) for row in await cur.fetchall()]
    if missing:
        raise invalid(f"board_ids: no board {', '.join(missing)}")


async def _audit(
    conn: Conn,
    actor: str,
    what: str,
    action: CatalogAction,
    request_id: str,
    *,
    before: CatalogAction | None,
) -> None:
    """An audit_log row with the whole definition after the change (and before, for updates)."""
    record: dict[str, object] = {"after": _definition(action)}
    if before is not None:
        record["before"] = _definition(before)
    detail = orjson.dumps(record).decode()
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, detail, request_id)"
        " VALUES (%s, %s, %s, %s, %s)",
        (actor, what, action.action_id, detail, request_id or None),
    )
