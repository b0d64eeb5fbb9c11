"""Schema migrations: numbered SQL files in ops/migrations, each applied once, in order, in its
own transaction, under an advisory lock so several processes may start at once."""

from __future__ import annotations

import logging
from importlib import resources

import psycopg
from psycopg import sql

log = logging.getLogger("scoreboard.migrate")
_LOCK_ID = 0x5C0EB0A2D


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("ops") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(url: str, *, up_to: int | None = None) -> list[str]:
    """Apply pending migrations (those numbered at most `up_to` when given, which lets a test
    stop at an older schema and check what the next migration does to data); return the names
    applied."""
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for number, name, text in _migrations():
                if number in done or (up_to is not None and number > up_to):
                    continue
                async with conn.transaction():
                    await conn.execute(sql.SQL(text))  # type: ignore[arg-type, unused-ignore]
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (number, name),
                    )
                log.info("applied migration %s", name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied


async def ensure_database(url: str) -> None:
    """Create the database the URL names when it does not exist (dev runner and tests)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = str(info.get("dbname", ""))
    if not name:
        return
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await cur.fetchone() is None:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


async def drop_database(url: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = str(info.get("dbname", ""))
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
