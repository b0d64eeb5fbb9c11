"""LeaderboardService's board RPCs (DESIGN decision 11): boards, their periods and the archive of
closed periods, and the admin acts on boards (create, update, close the open period now, each
audited). A mixin of LeaderboardServicer: protobuf <-> leaderboard_service.periods only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg import errors as pg_errors

from common.audit import write_audit
from common.auth.principal import (
    SCOPE_LEADERBOARD_READ,
    Principal,
    current_admin,
    current_principal,
)
from common.boards import BOARD_COLUMNS, Board, BoardError, Period, board_from_row
from common.db import Conn, Pool
from common.errors import Reason, ServiceError, invalid, not_found
from common.logs import request_id_var
from common.redis_values import Entry
from common.tiers import KINDS, Tier, TierError, encode, percent_tenths
from common.tiers import decode as decode_tiers
from common.timestamps import timestamp_pb, timestamp_pb_us
from leaderboard_service import periods
from scoreboard.leaderboard.v1 import leaderboard_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

if TYPE_CHECKING:
    from leaderboard_service.scheduler import BoardBook, PeriodScheduler

Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE = 10
MAX_PAGE = 100
WINNERS = 3
# Stores a new or changed board in the caller's transaction; returns the audit row's detail.
_BoardWrite = Callable[[Conn, Board], Awaitable[dict[str, object]]]


def _stamp(at: datetime | None) -> Timestamp | None:
    return None if at is None else timestamp_pb(at)


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def tier_pb(tier: Tier | None) -> leaderboard_pb2.Tier | None:
    return None if tier is None else leaderboard_pb2.Tier(tier_id=tier.id, name=tier.name)


def entry_pb(entry: Entry, tier: Tier | None = None) -> leaderboard_pb2.LeaderboardEntry:
    return leaderboard_pb2.LeaderboardEntry(
        rank=entry.rank,
        user_id=entry.user_id,
        username=entry.username,
        score=entry.score,
        reached_time=timestamp_pb_us(entry.reached_us),
        tier=tier_pb(tier),
    )


def standing_pb(standing: periods.Standing) -> leaderboard_pb2.LeaderboardEntry:
    return entry_pb(standing.entry, standing.tier)


def _tier_from_pb(index: int, item: pb.TierDefinition) -> Tier:
    cutoff = item.WhichOneof("cutoff")
    if cutoff is None:
        return Tier(item.tier_id, item.name)
    if cutoff == "top_percent":
        try:
            return Tier(item.tier_id, item.name, "top_percent", percent_tenths(item.top_percent))
        except TierError as exc:
            raise BoardError(f"tiers[{index}] ({item.tier_id!r}): {exc}") from None
    value = item.top_rank if cutoff == "top_rank" else item.min_score
    kind = next(k for k in KINDS if k == cutoff)
    return Tier(item.tier_id, item.name, kind, value)


def tier_definition_pb(tier: Tier) -> pb.TierDefinition:
    item = pb.TierDefinition(tier_id=tier.id, name=tier.name)
    if tier.kind == "top_percent":
        item.top_percent = tier.percent
    elif tier.kind == "top_rank":
        item.top_rank = tier.value
    elif tier.kind == "min_score":
        item.min_score = tier.value
    return item


def period_pb(period: Period) -> pb.PeriodInfo:
    return pb.PeriodInfo(
        board_id=period.board_id,
        period=period.number,
        start_time=_stamp(period.starts_at),
        end_time=_stamp(period.ends_at),
        closed=period.closed_at is not None,
        close_time=_stamp(period.closed_at),
        entries=period.entries or 0,
    )


def _reader(principal: Principal) -> None:
    if principal.is_service:
        principal.require_scope(SCOPE_LEADERBOARD_READ)


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 9:
        raise invalid("page_token is not valid")
    return int(token)


def _page_size(size: int) -> int:
    if size < 0:
        raise invalid("page_size must not be negative")
    return min(size or DEFAULT_PAGE, MAX_PAGE)


def board_from_pb(info: pb.BoardInfo) -> Board:
    try:
        return Board(
            id=info.board_id,
            name=info.name,
            sort_order="asc" if info.sort_order == "asc" else "desc",
            combine=(
                "best"
                if info.combine == "best"
                else "latest"
                if info.combine == "latest"
                else "sum"
            ),
            reset_cron=info.reset_schedule or None,
            time_zone=info.time_zone or "UTC",
            season_start=_time(info.season_start_time, info.HasField("season_start_time")),
            season_end=_time(info.season_end_time, info.HasField("season_end_time")),
            keep_periods=info.keep_periods,
            min_value=info.min_value if info.HasField("min_value") else None,
            max_value=info.max_value if info.HasField("max_value") else None,
            tiers=tuple(_tier_from_pb(i, t) for i, t in enumerate(info.tiers)),
        ).validated()
    except BoardError as exc:
        raise invalid(str(exc)) from None


class BoardRpcs:
    _pool: Pool
    _book: BoardBook | None
    _scheduler: PeriodScheduler | None

    def _now(self) -> datetime:
        return datetime.now(UTC) if self._scheduler is None else self._scheduler.now()

    async def _board_info(self, board_id: str) -> pb.BoardInfo:
        state = await periods.board_state(self._pool, board_id, self._now())
        if state is None:
            raise not_found(Reason.NOT_FOUND, f"there is no board {board_id!r}")
        b = state.board
        info = pb.BoardInfo(
            board_id=b.id,
            name=b.name,
            sort_order=b.sort_order,
            combine=b.combine,
            reset_schedule=b.reset_cron or "",
            time_zone=b.time_zone,
            season_start_time=_stamp(b.season_start),
            season_end_time=_stamp(b.season_end),
            keep_periods=b.keep_periods,
            min_value=b.min_value,
            max_value=b.max_value,
            tiers=[tier_definition_pb(t) for t in b.tiers],
        )
        if state.current is not None:
            info.current_period = state.current.number
            info.period_start_time.FromDatetime(state.current.starts_at)
            if state.current.ends_at is not None:
                info.next_reset_time.FromDatetime(state.current.ends_at)
        if state.previous is not None:
            info.last_closed_period = state.previous.number
            winners = await periods.standings_page(
                self._pool, b.id, state.previous.number, 0, WINNERS
            )
            info.last_winners.extend(standing_pb(s) for s in winners)
        return info

    async def ListBoards(
        self, request: pb.ListBoardsRequest, context: Context
    ) -> pb.ListBoardsResponse:
        _reader(current_principal())
        size, offset = _page_size(request.page_size), _offset(request.page_token)
        boards = await periods.list_boards(self._pool)
        page = boards[offset : offset + size]
        more = offset + size < len(boards)
        return pb.ListBoardsResponse(
            boards=[await self._board_info(b.id) for b in page],
            next_page_token=str(offset + size) if more else "",
        )

    async def GetBoard(self, request: pb.GetBoardRequest, context: Context) -> pb.GetBoardResponse:
        _reader(current_principal())
        return pb.GetBoardResponse(board=await self._board_info(request.board_id or "default"))

    async def ListPeriods(
        self, request: pb.ListPeriodsRequest, context: Context
    ) -> pb.ListPeriodsResponse:
        _reader(current_principal())
        board = request.board_id or "default"
        await self._board_info(board)  # NOT_FOUND for an unknown board
        size, before = _page_size(request.page_size), _offset(request.page_token)
        found = await periods.list_periods(self._pool, board, before, size + 1)
        more = len(found) > size
        found = found[:size]
        return pb.ListPeriodsResponse(
            periods=[period_pb(p) for p in found],
            next_page_token=str(found[-1].number) if more and found else "",
        )

    async def closed_period(self, board: str, number: int) -> Period:
        period = await periods.get_period(self._pool, board, number)
        if period is None:
            raise not_found(Reason.NOT_FOUND, f"board {board!r} has no period {number}")
        if period.closed_at is None:
            raise ServiceError(
                grpc.StatusCode.FAILED_PRECONDITION,
                Reason.PERIOD_NOT_CLOSED,
                f"period {number} of board {board!r} is not closed: read the live board",
            )
        return period

    async def ListPeriodEntries(
        self, request: pb.ListPeriodEntriesRequest, context: Context
    ) -> pb.ListPeriodEntriesResponse:
        _reader(current_principal())
        board = request.board_id or "default"
        if request.period < 1:
            raise invalid("period must be a period number (1 or more)")
        period = await self.closed_period(board, request.period)
        size, offset = _page_size(request.page_size), _offset(request.page_token)
        response = pb.ListPeriodEntriesResponse(period=period_pb(period))
        if request.user_id:
            found = await periods.standing_of(self._pool, board, period.number, request.user_id)
            if found is None:
                raise not_found(Reason.USER_NOT_FOUND, "this user has no score in the period")
            standing, position = found
            response.user_entry.CopyFrom(standing_pb(standing))
            offset = (position - 1) // size * size
        entries = await periods.standings_page(self._pool, board, period.number, offset, size)
        response.entries.extend(standing_pb(s) for s in entries)
        if offset + len(entries) < (period.entries or 0):
            response.next_page_token = str(offset + len(entries))
        return response

    async def _audit(
        self, principal: Principal, action: str, target: str, detail: Mapping[str, object]
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await _write_audit(conn, principal, action, target, detail)

    async def CreateBoard(
        self, request: pb.CreateBoardRequest, context: Context
    ) -> pb.CreateBoardResponse:
        info = await self._save_board(request.board, "board.create", _insert_board)
        return pb.CreateBoardResponse(board=info)

    async def UpdateBoard(
        self, request: pb.UpdateBoardRequest, context: Context
    ) -> pb.UpdateBoardResponse:
        info = await self._save_board(request.board, "board.update", self._update_board)
        return pb.UpdateBoardResponse(board=info)

    async def _save_board(
        self, message: pb.BoardInfo, action: str, write: _BoardWrite
    ) -> pb.BoardInfo:
        """An admin's new or changed board: `write` stores it and says what the audit row
        records, in the transaction that writes that row; then its periods are laid out and this
        replica reads it. Returns the board as it is now."""
        principal = current_admin()
        board = board_from_pb(message)
        async with self._pool.connection() as conn, conn.transaction():
            detail = await write(conn, board)
            await _write_audit(conn, principal, action, f"board:{board.id}", detail)
        await periods.ensure_periods(self._pool, board.id, self._now())
        await self._board_changed(board.id)
        return await self._board_info(board.id)

    async def _update_board(self, conn: Conn, board: Board) -> dict[str, object]:
        cur = await conn.execute(
            f"SELECT {BOARD_COLUMNS}, tiers FROM boards WHERE id = %s FOR NO KEY UPDATE",
            (board.id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise not_found(Reason.NOT_FOUND, f"there is no board {board.id!r}")
        old = board_from_row(row[:-1]).with_changes(tiers=decode_tiers(row[-1]))
        if (old.sort_order, old.combine) != (board.sort_order, board.combine):
            cur = await conn.execute(
                "SELECT 1 FROM user_scores WHERE board_id = %s LIMIT 1", (board.id,)
            )
            if await cur.fetchone() is not None:
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    Reason.BOARD_HAS_SCORES,
                    "sort order and combine cannot change once the board has scores",
                )
        values = _board_values(board)
        await conn.execute(
            "UPDATE boards SET name = %s, sort_order = %s, combine = %s, reset_cron = %s,"
            " time_zone = %s, season_start = %s, season_end = %s, keep_periods = %s,"
            " min_value = %s, max_value = %s, tiers = %s::jsonb, updated_at = now()"
            " WHERE id = %s",
            (*values[1:], encode(board.tiers).decode(), board.id),
        )
        # The schedule applies from the next period: periods laid out ahead that have not
        # started are laid out again by the new schedule.
        await conn.execute(
            "DELETE FROM board_periods WHERE board_id = %s AND starts_at > %s"
            " AND closed_at IS NULL AND period > (SELECT min(period) FROM board_periods"
            " WHERE board_id = %s AND closed_at IS NULL)",
            (board.id, self._now(), board.id),
        )
        return {"before": _board_detail(old), "after": _board_detail(board)}

    async def _board_changed(self, board: str) -> None:
        """This replica reads the new definition at once (tiers of its live reads, the Redis
        copy stream_service reads); the others at their scheduler's next pass."""
        if self._scheduler is not None:
            await self._scheduler.refresh(board)
            self._scheduler.wake()

    async def ClosePeriod(
        self, request: pb.ClosePeriodRequest, context: Context
    ) -> pb.ClosePeriodResponse:
        principal = current_admin()
        board = request.board_id or "default"
        if self._scheduler is None:
            raise ServiceError(
                grpc.StatusCode.FAILED_PRECONDITION,
                Reason.NO_OPEN_PERIOD,
                "periods are not managed by this server",
            )
        try:
            closed = await self._scheduler.close_now(board)
        except periods.PeriodError as exc:
            raise ServiceError(
                grpc.StatusCode.FAILED_PRECONDITION, Reason.NO_OPEN_PERIOD, str(exc)
            ) from None
        if closed is None:
            raise ServiceError(
                grpc.StatusCode.ABORTED,
                Reason.PERIOD_ALREADY_CLOSED,
                "the period was closed already",
            )
        await self._audit(
            principal,
            "board.close_period",
            f"board:{board}",
            {"period": closed.period, "entries": closed.entries},
        )
        return pb.ClosePeriodResponse(period=closed.period, entries=closed.entries)


async def _insert_board(conn: Conn, board: Board) -> dict[str, object]:
    try:
        await conn.execute(
            f"INSERT INTO boards ({BOARD_COLUMNS}, tiers) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            (*_board_values(board), encode(board.tiers).decode()),
        )
    except pg_errors.UniqueViolation:
        raise ServiceError(
            grpc.StatusCode.ALREADY_EXISTS,
            Reason.BOARD_EXISTS,
            f"board {board.id!r} exists",
        ) from None
    return {"board": _board_detail(board)}


async def _write_audit(
    conn: Conn, principal: Principal, action: str, target: str, detail: Mapping[str, object]
) -> None:
    await write_audit(
        conn,
        actor=principal.actor,
        action=action,
        target=target,
        detail=detail,
        request_id=request_id_var.get(),
    )


def _board_values(board: Board) -> tuple[object, ...]:
    return (
        board.id,
        board.name,
        board.sort_order,
        board.combine,
        board.reset_cron,
        board.time_zone,
        board.season_start,
        board.season_end,
        board.keep_periods,
        board.min_value,
        board.max_value,
    )


def _board_detail(board: Board) -> dict[str, object]:
    return {
        "name": board.name,
        "sort_order": board.sort_order,
        "combine": board.combine,
        "reset_cron": board.reset_cron,
        "time_zone": board.time_zone,
        "season_start": board.season_start.isoformat() if board.season_start else None,
        "season_end": board.season_end.isoformat() if board.season_end else None,
        "keep_periods": board.keep_periods,
        "min_value": board.min_value,
        "max_value": board.max_value,
        "tiers": [
            {"id": t.id, "name": t.name, "kind": t.kind, "value": t.value} for t in board.tiers
        ],
    }
