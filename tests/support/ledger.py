"""What the ledger in PostgreSQL says: one user's score row next to its ledger, the invariant
every score change keeps, and the size of the audit log and the outbox."""

from __future__ import annotations

from common.db import Pool


async def score_row(pool: Pool, user_id: str) -> tuple[int, int, int, int]:
    """total, version, SUM(points) and count of the ledger, for the default board."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.total, s.version,"
            " (SELECT coalesce(sum(points), 0) FROM user_actions a"
            "   WHERE a.user_id = s.user_id AND a.board_id = s.board_id),"
            " (SELECT count(*) FROM user_actions a"
            "   WHERE a.user_id = s.user_id AND a.board_id = s.board_id)"
            " FROM user_scores s WHERE s.board_id = 'default' AND s.user_id = %s",
            (user_id,),
        )
        row = await cur.fetchone()
    assert row is not None, "the user has no score row"
    total, version, points, count = (int(v) for v in row)  # type: ignore[call-overload]
    return total, version, points, count


async def assert_ledger_invariant(pool: Pool) -> None:
    """For every user: total == SUM(points) and version == number of ledger rows."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.user_id, s.total, s.version, coalesce(sum(a.points), 0), count(a.id)"
            " FROM user_scores s LEFT JOIN user_actions a"
            " ON a.user_id = s.user_id AND a.board_id = s.board_id"
            " GROUP BY s.user_id, s.total, s.version"
        )
        rows = await cur.fetchall()
    broken = [r for r in rows if r[1] != r[3] or r[2] != r[4]]
    assert not broken, f"ledger invariant broken: {broken}"


async def audit_count(pool: Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM audit_log")
        row = await cur.fetchone()
    assert row is not None
    count = row[0]
    assert isinstance(count, int)
    return count


async def outbox_count(pool: Pool) -> int:
    """Score changes committed but not yet relayed to the stream."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM outbox")
        row = await cur.fetchone()
        await conn.rollback()
    return int(row[0]) if row else 0  # type: ignore[call-overload]
