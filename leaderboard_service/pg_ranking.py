"""The ranking computed by PostgreSQL, ordered exactly like Redis: total desc, reached_at asc,
user_id asc; standard competition rank. Serves queries while Redis is being rebuilt."""

from __future__ import annotations

from common.db import Pool
from leaderboard_service.ranking import Entry, TopPage, UserRank

_RANKED = (
    "FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %s AND s.version > 0 AND NOT u.banned"
)


class PgRanking:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def top(self, board: str, offset: int, count: int) -> TopPage:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT s.user_id::text, u.display_name, s.total,"
                f" rank() OVER (ORDER BY s.total DESC) {_RANKED}"
                " ORDER BY s.total DESC, s.reached_at, s.user_id OFFSET %s LIMIT %s",
                (board, offset, count),
            )
            rows = await cur.fetchall()
            cur = await conn.execute(
                "SELECT count(*), (extract(epoch FROM max(s.updated_at)) * 1000000)::bigint "
                + _RANKED,
                (board,),
            )
            summary = await cur.fetchone()
        assert summary is not None
        entries = [Entry(int(r[3]), str(r[0]), str(r[1]), int(r[2])) for r in rows]  # type: ignore[call-overload]
        return TopPage(entries, int(summary[0]), int(summary[1] or 0), from_fallback=True)  # type: ignore[call-overload]

    async def user_rank(self, board: str, user_id: str, around: int) -> UserRank | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT s.total, s.reached_at, u.display_name {_RANKED} AND s.user_id = %s",
                (board, user_id),
            )
            mine = await cur.fetchone()
            if mine is None:
                return None
            total, reached, name = mine
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE s.total > %s),"
                " count(*) FILTER (WHERE s.total > %s OR (s.total = %s AND"
                " (s.reached_at, s.user_id) < (%s, %s))), count(*) " + _RANKED,
                (total, total, total, reached, user_id, board),
            )
            counts = await cur.fetchone()
            assert counts is not None
            higher, position, users = (int(c) for c in counts)  # type: ignore[call-overload]
            cur = await conn.execute(
                f"SELECT s.total {_RANKED} ORDER BY s.total DESC, s.reached_at, s.user_id"
                " OFFSET 9 LIMIT 1",
                (board,),
            )
            tenth = await cur.fetchone()
        nearby: list[Entry] = []
        if around > 0:
            first = max(0, position - around)
            page = await self.top(board, first, position - first + around + 1)
            nearby = page.entries
        return UserRank(
            entry=Entry(higher + 1, user_id, str(name), int(total)),  # type: ignore[call-overload]
            position=position,
            total_users=users,
            tenth_score=None if tenth is None else int(tenth[0]),  # type: ignore[call-overload]
            nearby=nearby,
        )
