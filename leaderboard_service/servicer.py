"""LeaderboardService: protobuf <-> rank queries."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from typing import Any

import grpc
import orjson
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from common.audit import write_audit
from common.config import DEFAULT_BOARD
from common.db import Pool
from common.errors import Reason, invalid, not_found
from common.keys import Keys
from common.logs import request_id_var
from common.principal import SCOPE_LEADERBOARD_READ, Principal, current_principal
from leaderboard_service.pg_ranking import PgRanking
from leaderboard_service.ranking import Entry, RankingNotReady, RedisRanking, TopPage, UserRank
from leaderboard_service.rebuild import rebuild_when_free
from leaderboard_service.reconcile import compare
from leaderboard_service.scripts import Scripts
from scoreboard.leaderboard.v1 import leaderboard_pb2, leaderboard_service_pb2_grpc
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE = 100
MAX_OFFSET = 100_000


def _board(requested: str) -> str:
    board = requested or DEFAULT_BOARD
    if board != DEFAULT_BOARD:
        raise not_found(Reason.NOT_FOUND, f"no board {board}")
    return board


def _reader(principal: Principal) -> None:
    """Users read the board; services need leaderboard:read."""
    if principal.is_service:
        principal.require_scope(SCOPE_LEADERBOARD_READ)


def _entry_pb(entry: Entry) -> leaderboard_pb2.LeaderboardEntry:
    return leaderboard_pb2.LeaderboardEntry(
        rank=entry.rank, user_id=entry.user_id, username=entry.username, score=entry.score
    )


def encode_page_token(board: str, offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"b": board, "o": offset})).decode().rstrip("=")


def decode_page_token(token: str, board: str) -> int:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
        if data["b"] != board or not 0 <= offset <= MAX_OFFSET:
            raise ValueError
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise invalid("page_token is not valid") from None
    return offset


def _user_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid("user_id must be a user id (UUID)") from None


class LeaderboardServicer(leaderboard_service_pb2_grpc.LeaderboardServiceServicer):
    def __init__(self, pool: Pool, redis: aioredis.Redis, scripts: Scripts, keys: Keys) -> None:
        self._pool = pool
        self._redis = redis
        self._scripts = scripts
        self._keys = keys
        self._redis_ranking = RedisRanking(scripts, keys)
        self._pg_ranking = PgRanking(pool)

    async def _top(self, board: str, offset: int, count: int) -> TopPage:
        try:
            return await self._redis_ranking.top(board, offset, count)
        except (RankingNotReady, OSError, aioredis.RedisError):
            return await self._pg_ranking.top(board, offset, count)

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: Context
    ) -> pb.ListEntriesResponse:
        _reader(current_principal())
        board = _board(request.board_id)
        if request.page_size < 0:
            raise invalid("page_size must not be negative")
        size = min(request.page_size or 10, MAX_PAGE)
        offset = decode_page_token(request.page_token, board) if request.page_token else 0
        page = await self._top(board, offset, size)
        update = Timestamp()
        update.FromMicroseconds(page.update_us)
        next_offset = offset + len(page.entries)
        return pb.ListEntriesResponse(
            entries=[_entry_pb(e) for e in page.entries],
            next_page_token=(
                encode_page_token(board, next_offset)
                if len(page.entries) == size and next_offset < min(page.total_users, MAX_OFFSET)
                else ""
            ),
            total_users=page.total_users,
            update_time=update,
            from_fallback=page.from_fallback,
        )

    async def GetUserRank(
        self, request: pb.GetUserRankRequest, context: Context
    ) -> pb.GetUserRankResponse:
        _reader(current_principal())
        board = _board(request.board_id)
        result = await self._user_rank(board, _user_id(request.user_id), 0)
        return pb.GetUserRankResponse(
            entry=_entry_pb(result.entry),
            in_top10=result.in_top10,
            distance_from_top10=result.distance_from_top10,
            total_users=result.total_users,
        )

    async def ListEntriesAround(
        self, request: pb.ListEntriesAroundRequest, context: Context
    ) -> pb.ListEntriesAroundResponse:
        _reader(current_principal())
        board = _board(request.board_id)
        if not 0 <= request.count <= 50:
            raise invalid("count must be between 0 and 50")
        result = await self._user_rank(board, _user_id(request.user_id), request.count or 5)
        return pb.ListEntriesAroundResponse(entries=[_entry_pb(e) for e in result.nearby])

    async def _user_rank(self, board: str, user_id: str, around: int) -> UserRank:
        try:
            result = await self._redis_ranking.user_rank(board, user_id, around)
        except (RankingNotReady, OSError, aioredis.RedisError):
            result = await self._pg_ranking.user_rank(board, user_id, around)
        if result is None:
            raise not_found(Reason.USER_NOT_FOUND, "this user has no score on the board")
        return result

    async def RebuildRanking(
        self, request: pb.RebuildRankingRequest, context: Context
    ) -> pb.RebuildRankingResponse:
        principal = current_principal()
        principal.require_admin()
        board = _board(request.board_id)
        users = await rebuild_when_free(
            self._pool, self._redis, self._scripts, self._keys.board(board)
        )
        await self._audit(principal, "ranking.rebuild", board, {"users": users or 0})
        return pb.RebuildRankingResponse(users=users or 0)

    async def ReconcileRanking(
        self, request: pb.ReconcileRankingRequest, context: Context
    ) -> pb.ReconcileRankingResponse:
        principal = current_principal()
        principal.require_admin()
        board = _board(request.board_id)
        keys = self._keys.board(board)
        drift = await compare(self._pool, self._redis, keys)
        repaired = False
        if request.repair and drift.mismatched:
            await rebuild_when_free(self._pool, self._redis, self._scripts, keys)
            repaired = True
        detail = {"mismatched": drift.mismatched, "repair": request.repair, "repaired": repaired}
        await self._audit(principal, "ranking.reconcile", board, detail)
        return pb.ReconcileRankingResponse(
            users_in_database=drift.users_in_database,
            users_in_ranking=drift.users_in_ranking,
            mismatched=drift.mismatched,
            repaired=repaired,
        )

    async def _audit(
        self, principal: Principal, action: str, board: str, detail: Mapping[str, object]
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await write_audit(
                conn,
                actor=principal.actor,
                action=action,
                target=board,
                detail=detail,
                request_id=request_id_var.get(),
            )
