"""The ranking computed by PostgreSQL, ordered exactly like Redis (total desc, reached_at asc,
user_id asc) with the same standard competition rank. Serves queries while Redis is rebuilt.

Ranks are counted the way the Lua scripts count them (1 + users with a strictly higher total),
never with a window over the whole board, so a page or a rank costs index range scans on
user_scores_rank, not a sort of every user.
"""

from __future__ import annotations

from typing import Any

from common.db import Pool
from leaderboard_service.ranking import Entry, TopPage, UserRank

_RANKED = (
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %(board)s AND s.version > 0 AND NOT u.banned"
)
_ORDER = " ORDER BY s.total DESC, s.reached_at, s.user_id"
_REACHED_US = "(extract(epoch FROM s.reached_at) * 1000000)::bigint"

PAGE_SQL = (
    f"SELECT s.user_id::text, u.display_name, s.total, {_REACHED_US}"
    + _RANKED
    + _ORDER
    + " OFFSET %(offset)s LIMIT %(count)s"
)
HIGHER_SQL = "SELECT count(*)" + _RANKED + " AND s.total > %(total)s"
SUMMARY_SQL = (
    "SELECT (SELECT count(*)" + _RANKED + "),"
    " (SELECT (extract(epoch FROM max(t.updated_at)) * 1000000)::bigint FROM"
    " (SELECT s.updated_at" + _RANKED + _ORDER + " LIMIT 10) t)"
)
USER_SQL = (
    f"SELECT s.total, s.reached_at, {_REACHED_US}, u.display_name"
    + _RANKED
    + " AND s.user_id = %(user)s::uuid"
)
POSITION_SQL = (
    "SELECT (SELECT count(*)" + _RANKED + " AND s.total > %(total)s),"
    " (SELECT count(*)" + _RANKED + " AND s.total = %(total)s"
    " AND (s.reached_at, s.user_id) < (%(reached)s, %(user)s::uuid)),"
    " (SELECT count(*)" + _RANKED + "),"
    " (SELECT s.total" + _RANKED + _ORDER + " OFFSET 9 LIMIT 1)"
)


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    raise TypeError(f"expected an integer from PostgreSQL, got {value!r}")


def _ranked(rows: list[Any], first: int, higher: int) -> list[Entry]:
    """Rows from position `first` with competition ranks; `higher` = users above the first
    row's total."""
    entries: list[Entry] = []
    rank, previous = 0, None
    for index, (user, name, total, reached_us) in enumerate(rows):
        if total != previous:
            rank = higher + 1 if previous is None else first + index + 1
            previous = total
        entries.append(Entry(rank, str(user), str(name), _int(total), _int(reached_us)))
    return entries


class PgRanking:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def _page(self, conn: Any, board: str, offset: int, count: int) -> list[Entry]:
        if count <= 0:
            return []
        cur = await conn.execute(PAGE_SQL, {"board": board, "offset": offset, "count": count})
        rows = await cur.fetchall()
        if not rows:
            return []
        cur = await conn.execute(HIGHER_SQL, {"board": board, "total": rows[0][2]})
        higher = await cur.fetchone()
        return _ranked(rows, offset, _int(higher[0]) if higher else 0)

    async def top(self, board: str, offset: int, count: int) -> TopPage:
        async with self._pool.connection() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            entries = await self._page(conn, board, offset, count)
            cur = await conn.execute(SUMMARY_SQL, {"board": board})
            summary = await cur.fetchone()
            await conn.rollback()
        assert summary is not None
        return TopPage(entries, _int(summary[0]), _int(summary[1] or 0), from_fallback=True)

    async def user_rank(self, board: str, user_id: str, around: int) -> UserRank | None:
        async with self._pool.connection() as conn:
            # One snapshot for every count, so rank, position and neighbours agree.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur = await conn.execute(USER_SQL, {"board": board, "user": user_id})
            mine = await cur.fetchone()
            if mine is None:
                await conn.rollback()
                return None
            total, reached, reached_us, name = mine
            cur = await conn.execute(
                POSITION_SQL,
                {"board": board, "total": total, "reached": reached, "user": user_id},
            )
            counts = await cur.fetchone()
            assert counts is not None
            higher, tied_before, users, tenth = counts
            position = _int(higher) + _int(tied_before)
            nearby: list[Entry] = []
            if around > 0:
                first = max(0, position - around)
                nearby = await self._page(conn, board, first, position - first + around + 1)
            await conn.rollback()
        return UserRank(
            entry=Entry(_int(higher) + 1, user_id, str(name), _int(total), _int(reached_us)),
            position=position,
            total_users=_int(users),
            tenth_score=None if tenth is None else _int(tenth),
            nearby=nearby,
            from_fallback=True,
        )
