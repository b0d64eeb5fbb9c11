"""auth_service's PostgreSQL access: users, refresh tokens, revoked tokens, service accounts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from common.db import Conn, Pool
from common.errors import Reason, conflict


@dataclass(frozen=True)
class UserRow:
    user_id: str
    username: str
    display_name: str
    password_hash: str
    role: str
    banned: bool
    created_at: datetime


@dataclass(frozen=True)
class ServiceAccountRow:
    client_id: str
    secret_hash: str
    scopes: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True)
class RefreshOutcome:
    """Result of presenting a refresh token: the user and family when it was valid; reused=True
    when it had been used before (the family is then revoked); retried=True when it had, within
    the reuse grace, and its lost successor was replaced instead."""

    user: UserRow | None
    family_id: str | None
    reused: bool = False
    retried: bool = False


@dataclass(frozen=True)
class Revocations:
    tokens: list[tuple[str, datetime]]
    sessions: list[tuple[str, datetime]]
    read_at: datetime
    # (user id, every token issued before this time is refused): bans.
    users: list[tuple[str, datetime]] = field(default_factory=list)


_USER_COLUMNS = "id::text, username, display_name, password_hash, role, banned, created_at"


def _user(row: tuple[object, ...] | None) -> UserRow | None:
    if row is None:
        return None
    return UserRow(*row)  # type: ignore[arg-type]


class AuthStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create_user(self, username: str, display_name: str, password_hash: str) -> UserRow:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    f"INSERT INTO users (username, display_name, password_hash) VALUES (%s, %s, %s)"
                    f" RETURNING {_USER_COLUMNS}",
                    (username, display_name, password_hash),
                )
                row = _user(await cur.fetchone())
        except psycopg.errors.UniqueViolation:
            raise conflict(Reason.USERNAME_TAKEN, "that username is taken") from None
        assert row is not None
        return row

    async def user_by_username(self, username: str) -> UserRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(username) = lower(%s)", (username,)
            )
            return _user(await cur.fetchone())

    async def user_by_id(self, user_id: str) -> UserRow | None:
        try:
            uuid.UUID(user_id)
        except ValueError:
            return None
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
            return _user(await cur.fetchone())

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id)
            )

    async def set_role(self, username: str, role: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE users SET role = %s WHERE lower(username) = lower(%s)", (role, username)
            )
            return cur.rowcount == 1

    async def add_refresh_token(
        self, user_id: str, family_id: str, token_hash: bytes, expires_at: datetime
    ) -> bool:
        """Start a session; False when the user is banned by now. The user's row is share-locked:
        a ban committing meanwhile is waited for (then seen), and a ban that comes after sees
        this session and revokes it, so no session outlives a racing ban."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at)"
                " SELECT %s, id, %s, %s FROM users WHERE id = %s AND NOT banned FOR SHARE",
                (family_id, token_hash, expires_at, user_id),
            )
            return cur.rowcount == 1

    async def use_refresh_token(
        self,
        token_hash: bytes,
        new_hash: bytes,
        expires_at: datetime,
        session_expires: datetime,
        *,
        reuse_grace_seconds: float = 0.0,
    ) -> RefreshOutcome:
        """Rotate: mark the presented token used and store its successor, atomically. A token
        used before revokes its whole family and the session's access tokens (RFC 9700 reuse
        detection), unless it is a retry within the grace (_retry_within_grace); a revoked or
        expired one is just invalid."""
        async with self._pool.connection() as conn, conn.transaction():
            # clock_timestamp(), not now() (the transaction's start): the reuse grace orders a
            # token's use and its successor's issue across concurrent transactions.
            cur = await conn.execute(
                "UPDATE refresh_tokens SET used_at = clock_timestamp() WHERE token_hash = %s"
                " AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
                " RETURNING family_id::text, user_id::text",
                (token_hash,),
            )
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    "SELECT family_id::text, used_at IS NOT NULL"
                    " FROM refresh_tokens WHERE token_hash = %s",
                    (token_hash,),
                )
                seen = await cur.fetchone()
                if seen is not None and seen[1]:
                    family_id = str(seen[0])
                    if reuse_grace_seconds > 0:
                        retried = await self._retry_within_grace(
                            conn, family_id, token_hash, new_hash, expires_at, reuse_grace_seconds
                        )
                        if retried is not None:
                            return retried
                    await self._revoke_family(conn, family_id, session_expires)
                    return RefreshOutcome(None, family_id, reused=True)
                return RefreshOutcome(None, None)
            family_id, user_id = str(row[0]), str(row[1])
            user = await self._issue_successor(conn, family_id, user_id, new_hash, expires_at)
            return RefreshOutcome(user, family_id)

    @staticmethod
    async def _retry_within_grace(
        conn: Conn,
        family_id: str,
        token_hash: bytes,
        new_hash: bytes,
        expires_at: datetime,
        grace_seconds: float,
    ) -> RefreshOutcome | None:
        """A client whose refresh response was lost presents the same token again. Within the
        grace after its rotation, and only while nobody has used what came after it, the
        successor it never received is retired (used and revoked, so whoever presents it later
        revokes the session, as any reuse does) and a new successor is stored: at most one
        refresh token of the session stays valid. A successor that was used means the response
        did arrive: that is a reuse (None here)."""
        # Locked: concurrent retries of one token queue here, and the statements below (each
        # with a fresh snapshot) see what the one before them committed.
        cur = await conn.execute(
            "SELECT user_id::text, used_at FROM refresh_tokens WHERE token_hash = %s"
            " AND revoked_at IS NULL AND expires_at > now()"
            " AND used_at > now() - make_interval(secs => %s) FOR UPDATE",
            (token_hash, grace_seconds),
        )
        presented = await cur.fetchone()
        if presented is None:
            return None
        user_id, rotated_at = str(presented[0]), presented[1]
        # What came after it: its successor and any that replaced it since, newest first.
        cur = await conn.execute(
            "SELECT id, used_at IS NULL AND revoked_at IS NULL AND expires_at > now(),"
            " used_at IS NOT NULL AND revoked_at IS NOT NULL"
            " FROM refresh_tokens WHERE family_id = %s AND issued_at >= %s"
            " ORDER BY issued_at DESC",
            (family_id, rotated_at),
        )
        later = await cur.fetchall()
        if not later or not later[0][1] or not all(retired for _, _, retired in later[1:]):
            return None
        # Unless a refresh with it has just won the race: then the client had it, a reuse.
        cur = await conn.execute(
            "UPDATE refresh_tokens SET used_at = clock_timestamp(), revoked_at = clock_timestamp()"
            " WHERE id = %s AND used_at IS NULL AND revoked_at IS NULL RETURNING id",
            (later[0][0],),
        )
        if await cur.fetchone() is None:
            return None
        user = await AuthStore._issue_successor(conn, family_id, user_id, new_hash, expires_at)
        return RefreshOutcome(user, family_id, retried=True)

    @staticmethod
    async def _issue_successor(
        conn: Conn, family_id: str, user_id: str, new_hash: bytes, expires_at: datetime
    ) -> UserRow | None:
        """Stores the family's next refresh token; the user it is for."""
        cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
        user = _user(await cur.fetchone())
        await conn.execute(
            "INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at, issued_at)"
            " VALUES (%s, %s, %s, %s, clock_timestamp())",
            (family_id, user_id, new_hash, expires_at),
        )
        return user

    async def family_of(self, token_hash: bytes) -> tuple[str, str] | None:
        """The family and user of a refresh token."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT family_id::text, user_id::text FROM refresh_tokens WHERE token_hash = %s",
                (token_hash,),
            )
            row = await cur.fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    async def revoke_family(self, family_id: str, session_expires: datetime) -> None:
        """Revoke every refresh token of the family and, durably, the session's access tokens."""
        async with self._pool.connection() as conn, conn.transaction():
            await self._revoke_family(conn, family_id, session_expires)

    @staticmethod
    async def _revoke_family(conn: Conn, family_id: str, session_expires: datetime) -> None:
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now()"
            " WHERE family_id = %s AND revoked_at IS NULL",
            (family_id,),
        )
        await conn.execute(
            "INSERT INTO revoked_sessions (family_id, expires_at) VALUES (%s, %s)"
            " ON CONFLICT (family_id) DO UPDATE SET expires_at ="
            " greatest(revoked_sessions.expires_at, EXCLUDED.expires_at)",
            (family_id, session_expires),
        )

    async def revoke_token(self, jti: str, expires_at: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (%s, %s)"
                " ON CONFLICT (jti) DO NOTHING",
                (jti, expires_at),
            )

    async def revocations(self, since: datetime | None = None) -> Revocations:
        """Revocations still in force (revoked after `since`, when given), and the database
        time they were read at."""
        recent = "" if since is None else " AND revoked_at > %(since)s"
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > now()" + recent,
                {"since": since},
            )
            tokens = [(str(r[0]), r[1]) for r in await cur.fetchall()]
            cur = await conn.execute(
                "SELECT family_id::text, expires_at FROM revoked_sessions"
                " WHERE expires_at > now()" + recent,
                {"since": since},
            )
            sessions = [(str(r[0]), r[1]) for r in await cur.fetchall()]
            cur = await conn.execute(
                "SELECT user_id::text, revoked_before FROM revoked_users"
                " WHERE expires_at > now()" + recent,
                {"since": since},
            )
            users = [(str(r[0]), r[1]) for r in await cur.fetchall()]
            cur = await conn.execute("SELECT now()")
            now = await cur.fetchone()
        assert now is not None
        return Revocations(tokens, sessions, now[0], users)  # type: ignore[arg-type]

    async def purge_expired(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
            await conn.execute("DELETE FROM revoked_sessions WHERE expires_at < now()")
            await conn.execute("DELETE FROM revoked_users WHERE expires_at < now()")
            await conn.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'"
            )

    async def service_account(self, client_id: str) -> ServiceAccountRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT client_id, secret_hash, scopes, disabled FROM service_accounts"
                " WHERE client_id = %s",
                (client_id,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        scopes = row[2]
        assert isinstance(scopes, list)
        return ServiceAccountRow(str(row[0]), str(row[1]), tuple(scopes), bool(row[3]))

    async def save_service_account(
        self, client_id: str, secret_hash: str, scopes: tuple[str, ...]
    ) -> None:
        """Create the account, or rotate its secret (and set its scopes) when it exists."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO service_accounts (client_id, secret_hash, scopes) VALUES (%s, %s, %s)"
                " ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,"
                " scopes = EXCLUDED.scopes, rotated_at = now(), disabled = false",
                (client_id, secret_hash, list(scopes)),
            )

    async def rotate_service_secret(self, client_id: str, secret_hash: str) -> bool:
        """New secret for an existing account (its scopes stay); False when there is none."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE service_accounts SET secret_hash = %s, rotated_at = now()"
                " WHERE client_id = %s",
                (secret_hash, client_id),
            )
            return cur.rowcount == 1

    async def set_service_account_disabled(self, client_id: str, disabled: bool) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE service_accounts SET disabled = %s WHERE client_id = %s",
                (disabled, client_id),
            )
            return cur.rowcount == 1


def new_family_id() -> str:
    return str(uuid.uuid4())
