"""Helpers for score_service tests: typed gRPC clients with real tokens, catalog actions made for
a test, users, and the invariants every test checks afterwards."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf.duration_pb2 import Duration

from common.db import Pool
from common.errors import ServiceError, from_rpc_error
from common.redis_keys import Keys
from common.redis_values import parse_user_state
from scoreboard.events.v1 import events_pb2
from scoreboard.score.v1 import score_service_pb2 as pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.support.clients import metadata
from tests.support.ledger import outbox_count
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import admin_token, edge_token, game_token

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from scoreboard.score.v1.score_service_pb2_grpc import ScoreServiceAsyncStub

# Tokens and the outbox size live in tests.support; score tests import them from here too.
__all__ = ["admin_token", "edge_token", "game_token", "outbox_count"]

T = TypeVar("T")


@dataclass
class ScoreClient:
    """ScoreService over a real channel, calling with one token."""

    stub: ScoreServiceAsyncStub
    token: str

    def md(self, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return metadata(self.token) + extra

    async def complete(
        self,
        action_id: str,
        *,
        user_id: str = "",
        key: str = "",
        ticket: str = "",
        value: int | None = None,
    ) -> pb.CompleteActionResponse:
        request = pb.CompleteActionRequest(
            action_id=action_id, user_id=user_id, idempotency_key=key, ticket=ticket, value=value
        )
        return await call(self.stub.CompleteAction(request, metadata=self.md(), timeout=30))

    async def start(self, action_id: str, *, user_id: str = "") -> pb.StartActionResponse:
        request = pb.StartActionRequest(action_id=action_id, user_id=user_id)
        return await call(self.stub.StartAction(request, metadata=self.md(), timeout=30))

    async def list(self, *, user_id: str = "", include_inactive: bool = False) -> list[pb.Action]:
        request = pb.ListActionsRequest(user_id=user_id, include_inactive=include_inactive)
        reply = await call(self.stub.ListActions(request, metadata=self.md(), timeout=30))
        return list(reply.actions)


async def call(awaitable: Awaitable[T]) -> T:
    """Await a gRPC call; a failure becomes the ServiceError of the error contract."""
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from None


async def refused(awaitable: Awaitable[Any]) -> ServiceError:
    """The ServiceError a call is refused with (fails the test when it succeeds)."""
    try:
        result = await call(awaitable)
    except ServiceError as error:
        return error
    raise AssertionError(f"expected a refusal, got {result}")


@asynccontextmanager
async def score_client(stack: Stack, token: str) -> AsyncIterator[ScoreClient]:
    channel = grpc.aio.insecure_channel(stack.address("score"))
    try:
        yield ScoreClient(score_service_pb2_grpc.ScoreServiceStub(channel), token)
    finally:
        await channel.close()


def new_action_id(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


async def create_action(
    stack: Stack,
    *,
    base_points: int = 10,
    multiplier: float = 1.0,
    daily_limit: int = 1,
    cooldown: int = 0,
    requires_ticket: bool = False,
    min_duration: int = 0,
    active: bool = True,
    action_id: str | None = None,
    board_ids: tuple[str, ...] = (),
) -> pb.Action:
    """A catalog action of the test's own, created through CreateAction as an admin (counting
    also on `board_ids`)."""
    action = pb.Action(
        action_id=action_id or new_action_id(),
        name="Test action",
        description="Made by a test.",
        base_points=base_points,
        difficulty_multiplier=multiplier,
        daily_limit=daily_limit,
        cooldown=Duration(seconds=cooldown),
        requires_ticket=requires_ticket,
        min_duration=Duration(seconds=min_duration),
        active=active,
        board_ids=list(board_ids),
    )
    async with score_client(stack, await admin_token(stack)) as admin:
        reply = await call(
            admin.stub.CreateAction(
                pb.CreateActionRequest(action=action), metadata=admin.md(), timeout=30
            )
        )
    return reply.action


async def set_active(stack: Stack, action: pb.Action, active: bool) -> pb.Action:
    changed = pb.Action()
    changed.CopyFrom(action)
    changed.active = active
    async with score_client(stack, await admin_token(stack)) as admin:
        reply = await call(
            admin.stub.UpdateAction(
                pb.UpdateActionRequest(action=changed), metadata=admin.md(), timeout=30
            )
        )
    return reply.action


async def insert_users(pool: Pool, count: int) -> list[str]:
    """Users made directly in PostgreSQL (fixtures for tests that act through a game server)."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO users (id, username, display_name, password_hash)"
            " VALUES (%s, %s, %s, 'not-a-hash')",
            [(i, f"u{i[:8]}{n}", f"Player {n}") for n, i in enumerate(ids)],
        )
    return ids


async def ledger_rows(pool: Pool, user_id: str) -> list[tuple[Any, ...]]:
    """(id, action_id, points, actor, path, request_id) of the user's ledger, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, action_id, points, actor, path, request_id FROM user_actions"
            " WHERE user_id = %s ORDER BY id",
            (user_id,),
        )
        return list(await cur.fetchall())


async def score_of(pool: Pool, user_id: str) -> tuple[int, int] | None:
    """(total, version) of the user on the default board."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT total, version FROM user_scores WHERE board_id = 'default' AND user_id = %s",
            (user_id,),
        )
        row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else None  # type: ignore[call-overload]


async def assert_ledger_invariants(pool: Pool) -> int:
    """For every user, board and period: total == SUM(points) and version == number of ledger
    rows; and the slot index holds (no action counted past its daily limit on any board).
    Returns the number of score rows checked."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.user_id::text || '@' || s.board_id || ':' || s.period, s.total, s.version,"
            " coalesce(sum(a.points), 0), count(a.id)"
            " FROM user_scores s LEFT JOIN user_actions a ON a.board_id = s.board_id"
            "   AND a.period = s.period AND a.user_id = s.user_id"
            " GROUP BY s.user_id, s.board_id, s.period, s.total, s.version"
        )
        rows = await cur.fetchall()
        for user, total, version, points, count in rows:
            assert total == points, f"user {user}: total {total} != SUM(points) {points}"
            assert version == count, f"user {user}: version {version} != {count} ledger rows"
        cur = await conn.execute(
            "SELECT a.board_id, a.user_id, a.action_id, a.day, count(*), max(c.daily_limit)"
            " FROM user_actions a JOIN actions c ON c.id = a.action_id WHERE a.kind = 'action'"
            " GROUP BY a.board_id, a.user_id, a.action_id, a.day"
            " HAVING count(*) > max(c.daily_limit)"
        )
        over = await cur.fetchall()
        assert not over, f"completions past the daily limit: {over}"
    return len(rows)


# The rule counters as the ledger defines them (the same derivation as migration 0006), kept on
# the action's own board only (a completion's rows on further boards do not count twice), the
# per-user ones on its row of each period.
_OWN_BOARD = (
    "kind = 'action' AND board_id = (SELECT c.board_id FROM actions c WHERE c.id = action_id)"
)
_LEDGER_STATS_SQL = (
    "SELECT board_id, user_id, action_id, max(day), count(*) FILTER (WHERE day = last_day),"
    " max(created_at) FROM (SELECT *, max(day) OVER (PARTITION BY board_id, user_id, action_id)"
    f" AS last_day FROM user_actions WHERE {_OWN_BOARD}) a"
    " GROUP BY board_id, user_id, action_id"
)
_LEDGER_USER_SQL = (
    "SELECT DISTINCT ON (board_id, period, user_id) board_id, period, user_id, day,"
    " sum(points) OVER (PARTITION BY board_id, period, user_id, day), created_at, action_id"
    f" FROM user_actions WHERE {_OWN_BOARD}"
    " ORDER BY board_id, period, user_id, created_at DESC, id DESC"
)


async def assert_counters_match_ledger(pool: Pool) -> None:
    """The counters the rules read (action_stats, user_scores.day/day_points/last_*) equal what
    the ledger says, in both directions."""
    async with pool.connection() as conn:
        for expected, actual in (
            (
                _LEDGER_STATS_SQL,
                "SELECT board_id, user_id, action_id, day, day_count, last_at FROM action_stats",
            ),
            (
                _LEDGER_USER_SQL,
                "SELECT board_id, period, user_id, day, day_points, last_action_at,"
                " last_action_id FROM user_scores WHERE last_action_at IS NOT NULL",
            ),
        ):
            for first, second in ((expected, actual), (actual, expected)):
                cur = await conn.execute(f"({first}) EXCEPT ({second}) LIMIT 5")
                rows = await cur.fetchall()
                assert not rows, f"counters differ from the ledger: {rows}"


async def stream_events(redis: aioredis.Redis, keys: Keys) -> list[events_pb2.ScoreUpdated]:
    """Every ScoreUpdated event in the default board's stream, in stream order."""
    entries = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]",
        await redis.xrange(keys.board("default").events, "-", "+"),
    )
    return [events_pb2.ScoreUpdated.FromString(fields[b"e"]) for _, fields in entries]


async def assert_stream_covers_ledger(pool: Pool, events: list[events_pb2.ScoreUpdated]) -> None:
    """Every ledger row reached the stream at least once, and every event carries the state the
    ledger had right after that row (total = running sum, version = running count)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, user_id::text,"
            " sum(points) OVER (PARTITION BY user_id ORDER BY id),"
            " row_number() OVER (PARTITION BY user_id ORDER BY id)"
            " FROM user_actions WHERE board_id = 'default'"
        )
        expected = {int(r[0]): (str(r[1]), int(r[2]), int(r[3])) for r in await cur.fetchall()}  # type: ignore[call-overload]
    seen = {event.ledger_entry_id for event in events}
    missing = sorted(set(expected) - seen)
    assert not missing, f"{len(missing)} committed changes never reached the stream: {missing[:10]}"
    for event in events:
        assert event.ledger_entry_id in expected, f"event for an unknown ledger row: {event}"
        user, total, version = expected[event.ledger_entry_id]
        assert (event.user_id, event.total, event.version) == (user, total, version), event


async def ranking_versions(redis: aioredis.Redis, keys: Keys) -> dict[str, int]:
    """user id -> the version the Redis ranking has applied."""
    raw = cast("dict[bytes, bytes]", await redis.hgetall(keys.board("default").users))
    return {k.decode(): parse_user_state(v).version for k, v in raw.items()}


async def database_versions(pool: Pool) -> dict[str, int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT user_id::text, version FROM user_scores"
            " WHERE board_id = 'default' AND version > 0"
        )
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}  # type: ignore[call-overload]


async def wait_ranking_caught_up(stack: Stack, timeout: float = 30.0) -> None:
    """Until the outbox is empty and Redis has applied every user's latest version."""

    async def caught_up() -> bool:
        if await outbox_count(stack.pool):
            return False
        wanted = await database_versions(stack.pool)
        have = await ranking_versions(stack.redis, stack.keys)
        return all(have.get(user) == version for user, version in wanted.items())

    await wait_for(caught_up, timeout=timeout)


async def competition_rank(pool: Pool, total: int) -> int:
    """1 + the number of ranked users with a strictly higher total, from PostgreSQL."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM user_scores s JOIN users u ON u.id = s.user_id"
            " WHERE s.board_id = 'default' AND s.version > 0 AND NOT u.banned AND s.total > %s",
            (total,),
        )
        row = await cur.fetchone()
    return int(row[0]) + 1 if row else 1  # type: ignore[call-overload]
