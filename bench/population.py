"""The benchmark's player population: up to millions of users seeded in bulk with COPY (never one
by one), each with a starting score written as a ledger row, so the ledger invariant holds.

User ids are derived from the index (UUID with a fixed high half), so load generators can pick
any user without loading a million ids.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

import psycopg

# High 64 bits of every benchmark user id; low 64 bits are the index.
ID_HIGH = 0xB0A2_D5C0_0000_4000
SEED_ACTOR = "bench:seed"
CHUNK = 50_000
# Skewed mode: this many contenders start level, above everyone else.
CONTENDERS = 12
CONTENDER_SCORE = 1_000_000


def user_id(index: int) -> str:
    return str(uuid.UUID(int=(ID_HIGH << 64) | index))


@dataclass(frozen=True)
class Population:
    users: int
    seeded_now: int
    seconds: float


def _starting_score(rng: random.Random, index: int) -> int:
    if index < CONTENDERS:
        return CONTENDER_SCORE
    # A long tail: most players have little, a few have a lot (but below the contenders).
    return min(CONTENDER_SCORE - 1000, 1 + int(rng.expovariate(1 / 400)))


async def seed(database_url: str, users: int, *, board: str = "default") -> Population:
    """Make sure benchmark users 0..users-1 exist with a starting score; add only what is
    missing (a second run reuses the first run's population)."""
    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM users WHERE id >= %s AND id <= %s",
            (user_id(0), user_id((1 << 64) - 1)),
        )
        row = await cur.fetchone()
        have = int(row[0]) if row else 0
        if have >= users:
            return Population(have, 0, time.monotonic() - started)
        rng = random.Random(have)
        for first in range(have, users, CHUNK):
            last = min(users, first + CHUNK)
            await _copy_chunk(conn, board, first, last, rng)
            await conn.commit()
        await conn.execute("ANALYZE users")
        await conn.execute("ANALYZE user_scores")
        await conn.commit()
    return Population(users, users - have, time.monotonic() - started)


async def _copy_chunk(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    board: str,
    first: int,
    last: int,
    rng: random.Random,
) -> None:
    users, scores, ledger = [], [], []
    for index in range(first, last):
        uid = user_id(index)
        points = _starting_score(rng, index)
        users.append(f"{uid}\tbench.{index}\tPlayer {index}\t!bench-no-login\n")
        # Contenders reached their score at the same instant, so only the user id breaks ties.
        reached = "2026-01-01 00:00:00+00" if index < CONTENDERS else "2026-01-01 00:00:01+00"
        scores.append(f"{board}\t{uid}\t{points}\t1\t{reached}\n")
        ledger.append(f"{board}\t{uid}\tadjust\t{points}\t2026-01-01\t{SEED_ACTOR}\tbench\tseed\n")
    cur = conn.cursor()
    async with cur.copy(
        "COPY users (id, username, display_name, password_hash) FROM STDIN"
    ) as copy:
        await copy.write("".join(users))
    async with cur.copy(
        "COPY user_scores (board_id, user_id, total, version, reached_at) FROM STDIN"
    ) as copy:
        await copy.write("".join(scores))
    async with cur.copy(
        "COPY user_actions (board_id, user_id, kind, points, day, actor, path, reason) FROM STDIN"
    ) as copy:
        await copy.write("".join(ledger))
