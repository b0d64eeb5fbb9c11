"""LeaderboardService: protobuf <-> rank queries."""

from __future__ import annotations

import base64
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc
import orjson
import redis.asyncio as aioredis

from common.auth.principal import (
    SCOPE_LEADERBOARD_READ,
    Principal,
    current_admin,
    current_principal,
)
from common.errors import Reason, invalid, not_found
from common.redis_keys import BoardKeys
from common.redis_values import Entry
from common.tiers import Tier, percentile, tier_of
from common.timestamps import timestamp_pb_us
from leaderboard_service import periods
from leaderboard_service.board_rpcs import BoardRpcs, entry_pb, tier_pb
from leaderboard_service.pg_ranking import PgRanking
from leaderboard_service.ranking import (
    Listed,
    RankingNotReady,
    RedisRanking,
    TopPage,
    UserRank,
    UsersRanks,
    listed,
)
from leaderboard_service.rebuild import rebuild_when_free
from leaderboard_service.reconcile import compare
from leaderboard_service.stores import Stores
from scoreboard.leaderboard.v1 import leaderboard_pb2, leaderboard_service_pb2_grpc
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

if TYPE_CHECKING:
    from leaderboard_service.scheduler import BoardBook, PeriodScheduler

log = logging.getLogger("scoreboard.leaderboard")

Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE = 10
MAX_PAGE = 100
MAX_OFFSET = 100_000
MAX_TOKEN = 200
DEFAULT_AROUND = 5
MAX_AROUND = 50
MAX_LISTED = 100


def _reader(principal: Principal) -> None:
    """Users read the board; services need leaderboard:read."""
    if principal.is_service:
        principal.require_scope(SCOPE_LEADERBOARD_READ)


def encode_page_token(board: str, offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"b": board, "o": offset})).decode().rstrip("=")


def decode_page_token(token: str, board: str) -> int:
    """The offset a token stands for; INVALID_ARGUMENT when it is not one of ours for this
    board."""
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = data["o"]
        if data["b"] != board or type(offset) is not int or not 0 < offset <= MAX_OFFSET:
            raise ValueError
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise invalid("page_token is not valid") from None
    return offset


def _user_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid("user_id must be a user id (UUID)") from None


def _listed_ids(principal: Principal, user_ids: Sequence[str]) -> list[str]:
    """The distinct users a list asks for, in the order asked, then the signed-in caller (not
    counted in the limit)."""
    if len(user_ids) > MAX_LISTED:
        raise invalid(f"user_ids holds {len(user_ids)} ids; at most {MAX_LISTED} are allowed")
    ids: dict[str, None] = {}
    for index, value in enumerate(user_ids):
        try:
            ids[str(uuid.UUID(value))] = None
        except ValueError:
            raise invalid(f"user_ids[{index}] is not a user id (UUID): {value[:40]!r}") from None
    own = principal.user_id
    # An external issuer's subject that is not a UUID is none of our users: it ranks nowhere.
    if own is not None:
        with contextlib.suppress(ValueError):
            ids.setdefault(str(uuid.UUID(own)))
    return list(ids)


def _listed_pb(item: Listed, tier: Tier | None) -> leaderboard_pb2.UserListEntry:
    if item.entry is None:
        return leaderboard_pb2.UserListEntry(user_id=item.user_id, ranked=False)
    e = item.entry
    return leaderboard_pb2.UserListEntry(
        user_id=e.user_id,
        ranked=True,
        rank=e.rank,
        list_rank=item.list_rank,
        username=e.username,
        score=e.score,
        reached_time=timestamp_pb_us(e.reached_us),
        tier=tier_pb(tier),
    )


class LeaderboardServicer(BoardRpcs, leaderboard_service_pb2_grpc.LeaderboardServiceServicer):
    def __init__(
        self,
        stores: Stores,
        *,
        percentile_min_players: int = 100,
        book: BoardBook | None = None,
        scheduler: PeriodScheduler | None = None,
    ) -> None:
        self._pool = stores.pool
        self._redis = stores.redis
        self._scripts = stores.scripts
        self._keys = stores.keys
        self._boards = stores.boards
        self._percentile_min_players = percentile_min_players
        self._book = book
        self._scheduler = scheduler
        self._redis_ranking = RedisRanking(stores.scripts)
        self._pg_ranking = PgRanking(stores.pool)

    def _board(self, requested: str, period: int = 0) -> BoardKeys:
        """The keys of the board (the default one when none is named) and period (the one open
        now when 0)."""
        board = requested or self._boards[0]
        known = board in self._boards or (self._book is not None and self._book.knows(board))
        if not known:
            raise not_found(Reason.NOT_FOUND, f"there is no board {board!r}")
        if period < 0:
            raise invalid("period must not be negative")
        if self._book is None:
            return self._keys.board(board, period or 1)
        return self._book.keys(board, period)

    def _tier(self, keys: BoardKeys, entry: Entry | None, total_users: int) -> Tier | None:
        """A live entry's tier by the board's tiers as this process last read them (the
        scheduler's pass, or at once after an admin change on this replica)."""
        state = self._book.state(keys.board) if self._book is not None else None
        if entry is None or state is None or not state.board.tiers:
            return None
        asc = state.board.sort_order == "asc"
        return tier_of(state.board.tiers, entry.rank, total_users, entry.score, asc=asc)

    async def _archived(self, keys: BoardKeys) -> bool:
        """True when the keys' period is closed: its standings are in the archive."""
        if self._book is None or keys.period == self._book.period(keys.board):
            return False
        found = await periods.get_period(self._pool, keys.board, keys.period)
        if found is None:
            raise not_found(Reason.NOT_FOUND, f"board {keys.board!r} has no period {keys.period}")
        return found.closed_at is not None

    async def _top(self, keys: BoardKeys, offset: int, count: int) -> TopPage:
        try:
            return await self._redis_ranking.top(keys, offset, count)
        except RankingNotReady:
            pass
        except (OSError, aioredis.RedisError) as exc:
            log.warning("ranking unreachable; answering from PostgreSQL: %s", exc)
        return await self._pg_ranking.top(
            keys.board, offset, count, period=keys.period, asc=keys.asc
        )

    async def _user_rank(self, keys: BoardKeys, user_id: str, around: int) -> UserRank:
        try:
            result = await self._redis_ranking.user_rank(keys, user_id, around)
        except RankingNotReady:
            result = await self._pg_ranking.user_rank(
                keys.board, user_id, around, period=keys.period, asc=keys.asc
            )
        except (OSError, aioredis.RedisError) as exc:
            log.warning("ranking unreachable; answering from PostgreSQL: %s", exc)
            result = await self._pg_ranking.user_rank(
                keys.board, user_id, around, period=keys.period, asc=keys.asc
            )
        if result is None:
            raise not_found(Reason.USER_NOT_FOUND, "this user has no score on the board")
        return result

    async def _for_users(self, keys: BoardKeys, user_ids: list[str]) -> UsersRanks:
        try:
            return await self._redis_ranking.for_users(keys, user_ids)
        except RankingNotReady:
            pass
        except (OSError, aioredis.RedisError) as exc:
            log.warning("ranking unreachable; answering from PostgreSQL: %s", exc)
        return await self._pg_ranking.for_users(
            keys.board, user_ids, period=keys.period, asc=keys.asc
        )

    async def _live(self, board: str, period: int) -> BoardKeys:
        keys = self._board(board, period)
        if await self._archived(keys):
            raise invalid(
                f"period {keys.period} is closed: read it with ListEntries or ListPeriodEntries"
            )
        return keys

    async def _archive_top(
        self, keys: BoardKeys, offset: int, count: int
    ) -> tuple[TopPage, list[Tier | None]]:
        """A page of a closed period's standings, and the tier each entry froze with."""
        found = await self.closed_period(keys.board, keys.period)
        page = await periods.standings_page(self._pool, keys.board, keys.period, offset, count)
        closed_us = int(found.closed_at.timestamp() * 1_000_000) if found.closed_at else 0
        top = TopPage([s.entry for s in page], found.entries or 0, closed_us, from_fallback=False)
        return top, [s.tier for s in page]

    async def _archive_rank(self, keys: BoardKeys, user_id: str) -> tuple[UserRank, Tier | None]:
        found = await self.closed_period(keys.board, keys.period)
        standing = await periods.standing_of(self._pool, keys.board, keys.period, user_id)
        if standing is None:
            raise not_found(Reason.USER_NOT_FOUND, "this user has no score in the period")
        final, position = standing
        tenth = await periods.standings_page(self._pool, keys.board, keys.period, 9, 1)
        rank = UserRank(
            entry=final.entry,
            position=position - 1,
            total_users=found.entries or 0,
            tenth_score=tenth[0].entry.score if tenth else None,
            asc=keys.asc,
        )
        return rank, final.tier

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: Context
    ) -> pb.ListEntriesResponse:
        _reader(current_principal())
        keys = self._board(request.board_id, request.period)
        if request.page_size < 0:
            raise invalid("page_size must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        offset = decode_page_token(request.page_token, keys.board) if request.page_token else 0
        if await self._archived(keys):
            page, tiers = await self._archive_top(keys, offset, min(size, MAX_OFFSET - offset))
        else:
            page = await self._top(keys, offset, min(size, MAX_OFFSET - offset))
            tiers = [self._tier(keys, e, page.total_users) for e in page.entries]
        next_offset = offset + len(page.entries)
        more = len(page.entries) == size and next_offset < min(page.total_users, MAX_OFFSET)
        return pb.ListEntriesResponse(
            entries=[entry_pb(e, t) for e, t in zip(page.entries, tiers, strict=True)],
            next_page_token=encode_page_token(keys.board, next_offset) if more else "",
            total_users=page.total_users,
            update_time=timestamp_pb_us(page.update_us),
            from_fallback=page.from_fallback,
            period=keys.period,
        )

    async def GetUserRank(
        self, request: pb.GetUserRankRequest, context: Context
    ) -> pb.GetUserRankResponse:
        _reader(current_principal())
        keys = self._board(request.board_id, request.period)
        if await self._archived(keys):
            result, tier = await self._archive_rank(keys, _user_id(request.user_id))
        else:
            result = await self._user_rank(keys, _user_id(request.user_id), 0)
            tier = self._tier(keys, result.entry, result.total_users)
        return pb.GetUserRankResponse(
            entry=entry_pb(result.entry, tier),
            in_top10=result.in_top10,
            distance_from_top10=result.distance_from_top10,
            total_users=result.total_users,
            percentile=percentile(
                result.entry.rank, result.total_users, self._percentile_min_players
            ),
        )

    async def ListEntriesForUsers(
        self, request: pb.ListEntriesForUsersRequest, context: Context
    ) -> pb.ListEntriesForUsersResponse:
        principal = current_principal()
        _reader(principal)
        keys = await self._live(request.board_id, request.period)
        user_ids = _listed_ids(principal, request.user_ids)
        found = await self._for_users(keys, user_ids)
        return pb.ListEntriesForUsersResponse(
            entries=[
                _listed_pb(item, self._tier(keys, item.entry, found.total_users))
                for item in listed(user_ids, found.entries, keys.asc)
            ],
            total_users=found.total_users,
            from_fallback=found.from_fallback,
        )

    async def ListEntriesAround(
        self, request: pb.ListEntriesAroundRequest, context: Context
    ) -> pb.ListEntriesAroundResponse:
        _reader(current_principal())
        keys = await self._live(request.board_id, request.period)
        if not 0 <= request.count <= MAX_AROUND:
            raise invalid(f"count must be between 0 and {MAX_AROUND} (0 means {DEFAULT_AROUND})")
        user_id = _user_id(request.user_id)
        result = await self._user_rank(keys, user_id, request.count or DEFAULT_AROUND)
        return pb.ListEntriesAroundResponse(
            entries=[entry_pb(e, self._tier(keys, e, result.total_users)) for e in result.nearby]
        )

    async def RebuildRanking(
        self, request: pb.RebuildRankingRequest, context: Context
    ) -> pb.RebuildRankingResponse:
        principal = current_admin()
        keys = self._board(request.board_id)
        log.info("rebuild requested", extra={"board": keys.board, "actor": principal.actor})
        users = await rebuild_when_free(self._pool, self._redis, self._scripts, keys)
        await self._audit(principal, "ranking.rebuild", keys.board, {"users": users})
        return pb.RebuildRankingResponse(users=users)

    async def ReconcileRanking(
        self, request: pb.ReconcileRankingRequest, context: Context
    ) -> pb.ReconcileRankingResponse:
        principal = current_admin()
        keys = self._board(request.board_id)
        drift = await compare(self._pool, self._redis, self._scripts, keys)
        repaired = False
        if request.repair and drift.mismatched:
            log.warning(
                "ranking drift; repairing",
                extra={
                    "board": keys.board,
                    "mismatched": drift.mismatched,
                    "actor": principal.actor,
                },
            )
            await rebuild_when_free(self._pool, self._redis, self._scripts, keys)
            repaired = True
        detail = {"mismatched": drift.mismatched, "repair": request.repair, "repaired": repaired}
        await self._audit(principal, "ranking.reconcile", keys.board, detail)
        return pb.ReconcileRankingResponse(
            users_in_database=drift.users_in_database,
            users_in_ranking=drift.users_in_ranking,
            mismatched=drift.mismatched,
            repaired=repaired,
        )
