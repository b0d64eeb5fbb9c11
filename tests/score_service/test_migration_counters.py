"""Migration 0006 derives the rule counters (action_stats, user_scores.day/day_points/last_*) from
an existing ledger, so a deployment upgraded in place enforces the daily limits and cooldowns of
the completions made before the upgrade."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg

from ops.migrate import migrate
from tests.support.servers import Databases

UTC = dt.UTC


async def test_counters_are_backfilled_from_the_ledger(databases: Databases) -> None:
    url = await databases.empty()
    assert "0006_completion_counters.sql" not in await migrate(url, up_to=5)

    now = dt.datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    yesterday = today - dt.timedelta(days=1)
    long_ago = today - dt.timedelta(days=5)
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # (user, kind, action, points, day, slot, created_at)
    ledger = [
        (alice, "action", "complete-quest", 60, yesterday, 1, now - dt.timedelta(hours=30)),
        (alice, "action", "complete-quest", 60, yesterday, 2, now - dt.timedelta(hours=29)),
        (alice, "action", "win-match", 25, yesterday, 1, now - dt.timedelta(hours=28)),
        (alice, "action", "win-match", 25, yesterday, 2, now - dt.timedelta(hours=27)),
        (alice, "action", "win-match", 25, yesterday, 3, now - dt.timedelta(hours=26)),
        (alice, "action", "complete-quest", 60, today, 1, now - dt.timedelta(minutes=3)),
        (alice, "action", "daily-login", 10, today, 1, now - dt.timedelta(minutes=2)),
        # An admin adjustment is not a completion: it moves the total, not the counters.
        (alice, "adjust", None, 7, today, None, now - dt.timedelta(minutes=1)),
        (bob, "action", "daily-login", 10, long_ago, 1, now - dt.timedelta(days=5)),
    ]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for user, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
            await conn.execute(
                "INSERT INTO users (id, username, display_name, password_hash)"
                " VALUES (%s, %s, %s, 'x')",
                (user, name, name),
            )
        for user, kind, action, points, day, slot, at in ledger:
            await conn.execute(
                "INSERT INTO user_actions (board_id, user_id, kind, action_id, points, day, slot,"
                " actor, path, reason, created_at)"
                " VALUES ('default', %s, %s, %s, %s, %s, %s, 'test', 'test', %s, %s)",
                (user, kind, action, points, day, slot, "fix" if kind == "adjust" else None, at),
            )
        for user in (alice, bob, carol):
            rows = [r for r in ledger if r[0] == user]
            await conn.execute(
                "INSERT INTO user_scores (board_id, user_id, total, version)"
                " VALUES ('default', %s, %s, %s)",
                (user, sum(r[3] for r in rows), len(rows)),
            )

    assert await migrate(url, up_to=6) == ["0006_completion_counters.sql"]

    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT user_id, action_id, day, day_count, last_at FROM action_stats"
            " WHERE board_id = 'default' ORDER BY user_id, action_id"
        )
        stats = {(row[0], row[1]): row[2:] for row in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT user_id, total, day, day_points, last_action_at, last_action_id"
            " FROM user_scores WHERE board_id = 'default'"
        )
        scores = {row[0]: row[1:] for row in await cur.fetchall()}

    last = {(r[0], r[2]): r[6] for r in ledger}  # the last completion of each pair wins
    assert stats == {
        # Only today's completion counts towards today's limit; the last one sets the cooldown.
        (alice, "complete-quest"): (today, 1, last[alice, "complete-quest"]),
        (alice, "daily-login"): (today, 1, last[alice, "daily-login"]),
        # A pair last played on an older day keeps that day's count; the rules see a new day.
        (alice, "win-match"): (yesterday, 3, last[alice, "win-match"]),
        (bob, "daily-login"): (long_ago, 1, last[bob, "daily-login"]),
    }
    assert scores[alice] == (
        60 + 60 + 75 + 60 + 10 + 7,
        today,
        60 + 10,
        last[alice, "daily-login"],
        "daily-login",
    )
    assert scores[bob] == (10, long_ago, 10, last[bob, "daily-login"], "daily-login")
    # A user without completions has no counters yet.
    assert scores[carol] == (0, None, 0, None, None)
