"""Helpers of the leaderboard tests: users seeded straight into PostgreSQL with COPY, score events
written to the board's stream as score_service's relay writes them, gRPC clients with tokens,
and the ranking read back from both sides."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from common.db import Pool
from common.errors import ServiceError, from_rpc_error
from common.redis_keys import BoardKeys
from common.redis_values import parse_member, total_of
from scoreboard.events.v1 import events_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc
from tests.support.clients import metadata
from tests.support.ledger import outbox_count
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import admin_token, game_token

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
GROUP = "leaderboard"


def at(seconds: float) -> datetime:
    """A fixed instant, `seconds` after 2026-01-01 (reached times that tests control)."""
    return EPOCH + timedelta(seconds=seconds)


def micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Seeded:
    """A user with a score, as written to PostgreSQL."""

    total: int
    reached: datetime
    version: int = 1
    name: str = ""
    banned: bool = False
    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def display_name(self) -> str:
        return self.name or f"P{self.user_id[:6]}"


async def seed(pool: Pool, rows: Sequence[Seeded], board: str = "default") -> None:
    """Users and their scores in two COPYs (what score_service would have committed)."""
    async with pool.connection() as conn:
        cur = conn.cursor()
        async with cur.copy(
            "COPY users (id, username, display_name, password_hash, banned) FROM STDIN"
        ) as copy:
            for row in rows:
                username = "u" + uuid.UUID(row.user_id).hex[:31]
                await copy.write_row((row.user_id, username, row.display_name, "x", row.banned))
        async with cur.copy(
            "COPY user_scores (board_id, user_id, total, version, reached_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for row in rows:
                await copy.write_row(
                    (board, row.user_id, row.total, row.version, row.reached, row.reached)
                )
        await conn.commit()


async def set_score(pool: Pool, row: Seeded, board: str = "default") -> None:
    """Overwrite one user's score in PostgreSQL (as a committed score change would)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE user_scores SET total = %s, version = %s, reached_at = %s, updated_at = %s"
            " WHERE board_id = %s AND user_id = %s",
            (row.total, row.version, row.reached, row.reached, board, row.user_id),
        )
        await conn.execute("UPDATE users SET banned = %s WHERE id = %s", (row.banned, row.user_id))
        await conn.commit()


def event(row: Seeded, board: str = "default", **overrides: Any) -> bytes:
    """The ScoreUpdated event of a seeded state."""
    reached = Timestamp()
    reached.FromDatetime(row.reached)
    message = events_pb2.ScoreUpdated(
        event_id=f"{board}:{row.user_id}:{row.version}",
        board_id=board,
        user_id=row.user_id,
        display_name=row.display_name,
        total=row.total,
        version=row.version,
        commit_time=reached,
        reached_time=reached,
        excluded=row.banned,
    )
    for name, value in overrides.items():
        setattr(message, name, value)
    return message.SerializeToString()


async def publish(redis: aioredis.Redis, keys: BoardKeys, payloads: Iterable[bytes]) -> list[str]:
    """XADD events in one MULTI, so a waiting consumer reads them as one batch."""
    async with redis.pipeline(transaction=True) as pipe:
        for payload in payloads:
            pipe.xadd(keys.events, {"e": payload})
        ids = await pipe.execute()
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


async def drained(redis: aioredis.Redis, keys: BoardKeys, group: str = GROUP) -> bool:
    """Every entry of the stream delivered to the group and acknowledged."""
    try:
        stream: Any = await redis.xinfo_stream(keys.events)
        groups: Any = await redis.xinfo_groups(keys.events)
    except (OSError, aioredis.RedisError):
        return False  # no stream or group yet, or Redis restarting
    for info in groups:
        if info["name"] in (group, group.encode()):
            return bool(
                info["last-delivered-id"] == stream["last-generated-id"] and info["pending"] == 0
            )
    return False


async def wait_drained(redis: aioredis.Redis, keys: BoardKeys, timeout: float = 20) -> None:
    await wait_for(lambda: drained(redis, keys), timeout=timeout)


async def outbox_empty(pool: Pool) -> bool:
    return await outbox_count(pool) == 0


async def wait_settled(stack: Stack, timeout: float = 30) -> None:
    """Every committed score change relayed, applied, and the ranking ready."""
    keys = stack.keys.board("default")

    async def settled() -> bool:
        try:
            return await _settled()
        except (OSError, aioredis.RedisError):
            return False

    async def _settled() -> bool:
        return (
            await outbox_empty(stack.pool)
            and await drained(stack.redis, keys)
            and bool(await stack.redis.exists(keys.ready))
            and not await stack.redis.exists(keys.rebuild_lock)
        )

    await wait_for(settled, timeout=timeout)


Row = tuple[str, int, int]  # user id, total, reached µs


async def pg_order(pool: Pool, board: str = "default") -> list[Row]:
    """PostgreSQL's ranking, in the documented order."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.user_id::text, s.total, (extract(epoch FROM s.reached_at) * 1000000)::bigint"
            " FROM user_scores s JOIN users u ON u.id = s.user_id"
            " WHERE s.board_id = %s AND s.version > 0 AND NOT u.banned"
            " ORDER BY s.total DESC, s.reached_at, s.user_id",
            (board,),
        )
        rows = await cur.fetchall()
        await conn.rollback()
    return [(str(u), int(t), int(r)) for u, t, r in rows]  # type: ignore[call-overload]


async def redis_order(redis: aioredis.Redis, keys: BoardKeys) -> list[Row]:
    """The Redis ranking, decoded from the sorted set."""
    members: Any = await redis.zrange(keys.ranking, 0, -1, withscores=True)
    rows: list[Row] = []
    for member, score in members:
        parsed = parse_member(member)
        rows.append((parsed.user_id, total_of(score), parsed.reached_us))
    return rows


async def snapshot(redis: aioredis.Redis, keys: BoardKeys) -> tuple[Any, ...]:
    """Everything the ranking holds (sorted set, user states, stored top 10)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrange(keys.ranking, 0, -1, withscores=True)
        pipe.hgetall(keys.users)
        pipe.get(keys.top)
        ranking, users, top = await pipe.execute()
    return ranking, users, top


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def competition_ranks(totals: Sequence[int]) -> list[int]:
    """Standard competition ranks of totals already in descending order."""
    ranks: list[int] = []
    for index, total in enumerate(totals):
        ranks.append(ranks[-1] if index and totals[index - 1] == total else index + 1)
    return ranks


class Board:
    """LeaderboardService over a real channel, with one caller's token."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.channel = channel
        self.stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        self.token = token

    @classmethod
    async def as_admin(cls, stack: Stack) -> Board:
        return cls(
            grpc.aio.insecure_channel(stack.address("leaderboard")), await admin_token(stack)
        )

    @classmethod
    async def as_game(cls, stack: Stack) -> Board:
        return cls(grpc.aio.insecure_channel(stack.address("leaderboard")), await game_token(stack))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Board:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _meta(self) -> tuple[tuple[str, str], ...]:
        return metadata(self.token)

    async def entries(self, page_size: int = 0, page_token: str = "", board: str = "") -> Any:
        return await self.stub.ListEntries(
            pb.ListEntriesRequest(board_id=board, page_size=page_size, page_token=page_token),
            metadata=self._meta(),
            timeout=30,
        )

    async def all_entries(self, page_size: int = 100) -> list[Any]:
        """Every entry, following page tokens."""
        result: list[Any] = []
        token = ""
        while True:
            reply = await self.entries(page_size, token)
            result.extend(reply.entries)
            token = reply.next_page_token
            if not token:
                return result

    async def rank(self, user_id: str, board: str = "") -> Any:
        return await self.stub.GetUserRank(
            pb.GetUserRankRequest(board_id=board, user_id=user_id),
            metadata=self._meta(),
            timeout=30,
        )

    async def around(self, user_id: str, count: int = 0, board: str = "") -> Any:
        return await self.stub.ListEntriesAround(
            pb.ListEntriesAroundRequest(board_id=board, user_id=user_id, count=count),
            metadata=self._meta(),
            timeout=30,
        )

    async def rebuild(self, board: str = "") -> Any:
        return await self.stub.RebuildRanking(
            pb.RebuildRankingRequest(board_id=board), metadata=self._meta(), timeout=600
        )

    async def reconcile(self, repair: bool = False, board: str = "") -> Any:
        return await self.stub.ReconcileRanking(
            pb.ReconcileRankingRequest(board_id=board, repair=repair),
            metadata=self._meta(),
            timeout=600,
        )


async def refused(call: Any) -> ServiceError:
    """The ServiceError an awaitable gRPC call fails with (fails the test if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return from_rpc_error(exc)
    raise AssertionError("the call succeeded")


async def players(pool: Pool, count: int) -> list[str]:
    """Registered users without a score yet (COPY, no password hashing)."""
    rows = [Seeded(0, EPOCH) for _ in range(count)]
    async with pool.connection() as conn:
        cur = conn.cursor()
        async with cur.copy(
            "COPY users (id, username, display_name, password_hash) FROM STDIN"
        ) as copy:
            for row in rows:
                username = "u" + uuid.UUID(row.user_id).hex[:31]
                await copy.write_row((row.user_id, username, row.display_name, "x"))
        await conn.commit()
    return [row.user_id for row in rows]


class Game:
    """The real write path: a game server completing actions for players over gRPC
    (ScoreService -> PostgreSQL + outbox -> relay -> stream -> consumer)."""

    ACTION = "grind"

    def __init__(self, channel: grpc.aio.Channel, token: str, admin_token: str) -> None:
        self.channel = channel
        self.stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        self.token = token
        self.admin_token = admin_token

    @classmethod
    async def open(cls, stack: Stack, points: int = 7) -> Game:
        """With a repeatable action (no cooldown, a high daily limit) in the catalog."""
        game = cls(
            grpc.aio.insecure_channel(stack.address("score")),
            await game_token(stack),
            await admin_token(stack),
        )
        try:
            await game.stub.CreateAction(
                score_service_pb2.CreateActionRequest(
                    action=score_service_pb2.Action(
                        action_id=cls.ACTION,
                        name="Grind",
                        base_points=points,
                        difficulty_multiplier=1.0,
                        daily_limit=100_000,
                        active=True,
                    )
                ),
                metadata=metadata(game.admin_token),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            if from_rpc_error(exc).reason != "ACTION_EXISTS":
                raise
        return game

    async def complete(self, user_id: str, action_id: str = ACTION) -> Any:
        return await self.stub.CompleteAction(
            score_service_pb2.CompleteActionRequest(action_id=action_id, user_id=user_id),
            metadata=metadata(self.token),
            timeout=30,
        )

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Game:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def metric(name: str, **labels: str) -> float:
    """A Prometheus sample of this process (the services run in it)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0
