"""A large board for benchmarks and the million-user test: deterministic, full of ties, written
to PostgreSQL with COPY into a staging table and two INSERT ... SELECT (never row by row).

User i has a total on a coarse grid (about 200 users per total), a distinct time reached, and
every 1000th user ties exactly (same total, same instant) with the user before it, so the user
id decides. Every 100,000th user is banned (not ranked)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from common.db import Conn

BASE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
_MIX = 0x9E3779B97F4A7C15


def _hash(value: int) -> int:
    value = (value * _MIX) & 0xFFFFFFFFFFFFFFFF
    value ^= value >> 29
    return (value * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class SeedUser:
    index: int
    user_id: str
    total: int
    reached_us: int
    banned: bool

    @property
    def display_name(self) -> str:
        return f"Player {self.index}"


def _uuid(high: int, low: int) -> str:
    text = f"{high:016x}{low:016x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class BoardSpec:
    users: int
    seed: int = 1

    def user(self, index: int) -> SeedUser:
        return SeedUser(*self._row(index))

    def _row(self, index: int) -> tuple[int, str, int, int, bool]:
        base = index - 1 if index % 1000 == 1 else index  # the exact tie with the previous user
        h = _hash(base + self.seed * 1_000_003)
        return (
            index,
            _uuid(_hash(index ^ (self.seed << 40)), _hash(index + 0x5DEECE66D)),
            (h % 5000) * 10,
            BASE_US + (h >> 20) % 2_000_000_000_000,
            index % 100_000 == 99_999,
        )

    def rows(self) -> Iterator[tuple[int, str, int, int, bool]]:
        """(index, user id, total, reached µs, banned) of every user."""
        return (self._row(i) for i in range(self.users))

    def ranked_order(self) -> list[tuple[int, str, int, int]]:
        """(index, user id, total, reached µs) of ranked users in the documented order (total
        desc, reached asc, user id asc)."""
        ranked = [(i, u, t, r) for i, u, t, r, banned in self.rows() if not banned]
        ranked.sort(key=lambda row: (-row[2], row[3], row[1]))
        return ranked


async def seed_postgres(conn: Conn, spec: BoardSpec, board: str = "default") -> None:
    """Users and their scores (version 1), committed."""
    await conn.execute(
        "CREATE TEMP TABLE seed_users (i bigint, id uuid, total bigint, reached_us bigint,"
        " banned boolean) ON COMMIT DROP"
    )
    cur = conn.cursor()
    async with cur.copy("COPY seed_users FROM STDIN") as copy:
        lines: list[str] = []
        for index, user_id, total, reached_us, banned in spec.rows():
            lines.append(f"{index}\t{user_id}\t{total}\t{reached_us}\t{'t' if banned else 'f'}\n")
            if len(lines) >= 50_000:
                await copy.write("".join(lines))
                lines.clear()
        if lines:
            await copy.write("".join(lines))
    await conn.execute(
        "INSERT INTO users (id, username, display_name, password_hash, banned)"
        " SELECT id, 'seed' || i, 'Player ' || i, 'x', banned FROM seed_users"
    )
    await conn.execute(
        "INSERT INTO user_scores (board_id, user_id, total, version, reached_at, updated_at)"
        " SELECT %s, id, total, 1, t, t FROM"
        " (SELECT id, total, 'epoch'::timestamptz + reached_us * interval '1 microsecond' AS t"
        " FROM seed_users) s",
        (board,),
    )
    await conn.commit()
    # What autovacuum does soon after on a live database: statistics, and the visibility map
    # that lets counts run as index-only scans.
    autocommit = conn.autocommit
    await conn.set_autocommit(True)
    try:
        await conn.execute("VACUUM ANALYZE users")
        await conn.execute("VACUUM ANALYZE user_scores")
    finally:
        await conn.set_autocommit(autocommit)
