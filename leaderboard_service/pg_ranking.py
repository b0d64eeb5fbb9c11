"""The ranking computed by PostgreSQL, ordered exactly like Redis (total desc, reached_at asc,
user_id asc; total asc first on a lower-is-better board) with the same standard competition
rank. Serves queries while Redis is rebuilt.

Ranks are counted the way the Lua scripts count them (1 + users with a strictly higher total),
never with a window over the whole board, and without joining every user (see _count): a page
or a rank costs index range scans on user_scores_rank. Counting is still linear in the users
counted (PostgreSQL has no order-statistic index), so a rank deep in a million-user board takes
a good fraction of a second: fine for the minute a rebuild takes, not as the main path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from common.db import Pool
from common.redis_values import Entry
from leaderboard_service.ranking import TopPage, UserRank, UsersRanks

_RANKED = (
    " FROM user_scores s JOIN users u ON u.id = s.user_id"
    " WHERE s.board_id = %(board)s AND s.period = %(period)s AND s.version > 0 AND NOT u.banned"
)
COUNT_TTL = 1.0
_ORDER = " ORDER BY s.total DESC, s.reached_at, s.user_id"
_REACHED_US = "(extract(epoch FROM s.reached_at) * 1000000)::bigint"


def _count(condition: str) -> str:
    """Ranked users matching `condition` (on s): every scored user, counted on user_scores_rank
    alone, minus the banned ones (found through users_banned), so no join over the board."""
    return (
        "(SELECT count(*) FROM user_scores s"
        " WHERE s.board_id = %(board)s AND s.period = %(period)s"
        f" AND s.version > 0 AND {condition})"
        " - (SELECT count(*) FROM users u JOIN user_scores s"
        " ON s.user_id = u.id AND s.board_id = %(board)s AND s.period = %(period)s"
        f" WHERE u.banned AND s.version > 0 AND {condition})"
    )


PAGE_SQL = (
    f"SELECT s.user_id::text, u.display_name, s.total, {_REACHED_US}"
    + _RANKED
    + _ORDER
    + " OFFSET %(offset)s LIMIT %(count)s"
)
HIGHER_SQL = "SELECT " + _count("s.total > %(total)s")
COUNT_SQL = "SELECT " + _count("true")
UPDATE_SQL = (
    "SELECT (extract(epoch FROM max(t.updated_at)) * 1000000)::bigint FROM"
    " (SELECT s.updated_at" + _RANKED + _ORDER + " LIMIT 10) t"
)
USER_SQL = (
    f"SELECT s.total, s.reached_at, {_REACHED_US}, u.display_name"
    + _RANKED
    + " AND s.user_id = %(user)s::uuid"
)
POSITION_SQL = (
    "SELECT "
    + _count("s.total > %(total)s")
    + ", "
    + _count("s.total = %(total)s AND (s.reached_at, s.user_id) < (%(reached)s, %(user)s::uuid)")
    + ", (SELECT s.total"
    + _RANKED
    + _ORDER
    + " OFFSET 9 LIMIT 1)"
)

USERS_SQL = (
    f"SELECT s.user_id::text, u.display_name, s.total, {_REACHED_US}"
    + _RANKED
    + " AND s.user_id = ANY(%(users)s::uuid[])"
)
# Ranked users above each of several totals in one scan: `bounds` holds each total + 1,
# ascending, so width_bucket(total, bounds) is how many of the totals lie strictly below it.
# Rows from the users_banned side count negatively (see _count).
BUCKETS_SQL = (
    "SELECT b, sum(n)::bigint FROM ("
    "SELECT width_bucket(s.total, %(bounds)s::bigint[]) AS b, count(*) AS n FROM user_scores s"
    " WHERE s.board_id = %(board)s AND s.period = %(period)s AND s.version > 0"
    " AND s.total > %(low)s GROUP BY 1"
    " UNION ALL SELECT width_bucket(s.total, %(bounds)s::bigint[]), -count(*)"
    " FROM users u JOIN user_scores s ON s.user_id = u.id"
    " AND s.board_id = %(board)s AND s.period = %(period)s"
    " WHERE u.banned AND s.version > 0 AND s.total > %(low)s GROUP BY 1"
    ") t GROUP BY b"
)


def _ascending(sql: str) -> str:
    """A statement's form for a lower-is-better board: lower totals first and above."""
    return sql.replace("s.total DESC", "s.total").replace(
        "s.total > %(total)s", "s.total < %(total)s"
    )


# Per sort order (asc?): BUCKETS_SQL counts on the negated totals of an asc board, so "above"
# stays "a higher key" (the caller negates the totals it asks about).
_SQL: dict[bool, dict[str, str]] = {
    False: {
        "page": PAGE_SQL,
        "higher": HIGHER_SQL,
        "update": UPDATE_SQL,
        "position": POSITION_SQL,
        "buckets": BUCKETS_SQL,
    },
    True: {
        "page": _ascending(PAGE_SQL),
        "higher": _ascending(HIGHER_SQL),
        "update": _ascending(UPDATE_SQL),
        "position": _ascending(POSITION_SQL),
        "buckets": BUCKETS_SQL.replace("s.total", "(-s.total)"),
    },
}


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


def _higher(totals: list[int], buckets: dict[int, int]) -> dict[int, int]:
    """Users above each of `totals` (distinct, ascending) from the counts per bucket of
    BUCKETS_SQL: above totals[j] are the users of buckets j + 1 and beyond."""
    result: dict[int, int] = {}
    above = 0
    for index in range(len(totals), 0, -1):
        above += buckets.get(index, 0)
        result[totals[index - 1]] = above
    return result


class PgRanking:
    def __init__(self, pool: Pool, *, count_ttl: float = COUNT_TTL) -> None:
        self._pool = pool
        self._count_ttl = count_ttl
        # board -> (valid until, ranked users): counting the whole board is the one query
        # that is linear in its size on every request, and totalUsers may be a second old.
        self._counts: dict[tuple[str, int], tuple[float, int]] = {}

    async def _ranked_users(self, conn: Any, board: str, period: int) -> int:
        now = time.monotonic()
        cached = self._counts.get((board, period))
        if cached is not None and cached[0] > now:
            return cached[1]
        cur = await conn.execute(COUNT_SQL, {"board": board, "period": period})
        row = await cur.fetchone()
        count = _int(row[0]) if row else 0
        self._counts[(board, period)] = (now + self._count_ttl, count)
        return count

    async def _page(
        self, conn: Any, board: str, period: int, offset: int, count: int, asc: bool = False
    ) -> list[Entry]:
        if count <= 0:
            return []
        cur = await conn.execute(
            _SQL[asc]["page"], {"board": board, "period": period, "offset": offset, "count": count}
        )
        rows = await cur.fetchall()
        if not rows:
            return []
        cur = await conn.execute(
            _SQL[asc]["higher"], {"board": board, "period": period, "total": rows[0][2]}
        )
        higher = await cur.fetchone()
        return _ranked(rows, offset, _int(higher[0]) if higher else 0)

    async def top(
        self, board: str, offset: int, count: int, *, period: int = 1, asc: bool = False
    ) -> TopPage:
        async with self._pool.connection() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            entries = await self._page(conn, board, period, offset, count, asc)
            cur = await conn.execute(_SQL[asc]["update"], {"board": board, "period": period})
            update = await cur.fetchone()
            users = await self._ranked_users(conn, board, period)
            await conn.rollback()
        update_us = _int(update[0]) if update and update[0] is not None else 0
        return TopPage(entries, users, update_us, from_fallback=True)

    async def for_users(
        self, board: str, user_ids: Sequence[str], *, period: int = 1, asc: bool = False
    ) -> UsersRanks:
        """The ranked ones among `user_ids` (distinct), with their global ranks: one scan over
        the users above the lowest of them, whatever their number."""
        async with self._pool.connection() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur = await conn.execute(
                USERS_SQL, {"board": board, "period": period, "users": list(user_ids)}
            )
            rows = await cur.fetchall()
            higher: dict[int, int] = {}
            sign = -1 if asc else 1
            if rows:
                totals = sorted({sign * _int(row[2]) for row in rows})
                cur = await conn.execute(
                    _SQL[asc]["buckets"],
                    {
                        "board": board,
                        "period": period,
                        "bounds": [t + 1 for t in totals],
                        "low": totals[0],
                    },
                )
                buckets = {_int(b): _int(n) for b, n in await cur.fetchall()}
                higher = _higher(totals, buckets)
            users = await self._ranked_users(conn, board, period)
            await conn.rollback()
        entries = [
            Entry(
                higher[sign * _int(total)] + 1, str(user), str(name), _int(total), _int(reached_us)
            )
            for user, name, total, reached_us in rows
        ]
        return UsersRanks(entries, users, from_fallback=True)

    async def user_rank(
        self, board: str, user_id: str, around: int, *, period: int = 1, asc: bool = False
    ) -> UserRank | None:
        async with self._pool.connection() as conn:
            # One snapshot for every count, so rank, position and neighbours agree.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur = await conn.execute(USER_SQL, {"board": board, "period": period, "user": user_id})
            mine = await cur.fetchone()
            if mine is None:
                await conn.rollback()
                return None
            total, reached, reached_us, name = mine
            cur = await conn.execute(
                _SQL[asc]["position"],
                {
                    "board": board,
                    "period": period,
                    "total": total,
                    "reached": reached,
                    "user": user_id,
                },
            )
            counts = await cur.fetchone()
            assert counts is not None
            higher, tied_before, tenth = counts
            position = _int(higher) + _int(tied_before)
            users = await self._ranked_users(conn, board, period)
            nearby: list[Entry] = []
            if around > 0:
                first = max(0, position - around)
                nearby = await self._page(
                    conn, board, period, first, position - first + around + 1, asc
                )
            await conn.rollback()
        return UserRank(
            entry=Entry(_int(higher) + 1, user_id, str(name), _int(total), _int(reached_us)),
            position=position,
            total_users=users,
            tenth_score=None if tenth is None else _int(tenth),
            nearby=nearby,
            from_fallback=True,
            asc=asc,
        )
