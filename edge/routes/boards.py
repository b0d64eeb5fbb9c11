"""Boards and their periods over HTTP (issue 17): the boards with their current period and next
reset, a board's periods, and a closed period's final standings page by page. Also the `board`
and `period` query parameters (and the paging ones) the leaderboard routes share."""

from __future__ import annotations

import re
import uuid
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import Response

from common.config import DEFAULT_BOARD
from common.errors import invalid
from edge.api import ApiRoute, Param
from edge.responses import iso, ok
from edge.schemas import BOARD_ID, BoardInfo, Envelope, PeriodEntries, PeriodList
from edge.state import EdgeState, edge_state, optional_principal
from scoreboard.leaderboard.v1 import leaderboard_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

_BOARD = re.compile(BOARD_ID)
MAX_PERIOD = 2**31 - 1
_MAX_BOARDS = 1000


def board_id(value: str | None, where: str = "board") -> str:
    """A board id from the request (absent: the default board); 400 when malformed."""
    if value is None:
        return DEFAULT_BOARD
    if not _BOARD.match(value):
        raise invalid(f"{where} must be a board id ({BOARD_ID})")
    return value


def period_number(value: str | None, where: str = "period", *, current: bool = True) -> int:
    """A period number from the request; 0 (the period open now) when absent and `current`
    allows it; 400 when it is not a period number."""
    if value is None:
        if current:
            return 0
        raise invalid(f"{where} is required")
    low = 0 if current else 1
    if not value.isdigit() or len(value) > 10 or not low <= int(value) <= MAX_PERIOD:
        raise invalid(f"{where} must be a period number ({low} or more)")
    return int(value)


def board_query(request: Request) -> tuple[str, int]:
    """?board=ID&period=N of the leaderboard routes (the default board's open period)."""
    return (
        board_id(request.query_params.get("board")),
        period_number(request.query_params.get("period")),
    )


def _iso(stamp: Timestamp, present: bool) -> str | None:
    return iso(stamp.ToDatetime(tzinfo=UTC)) if present else None


def entry_json(e: leaderboard_pb2.LeaderboardEntry) -> dict[str, object]:
    return {"rank": e.rank, "userId": e.user_id, "username": e.username, "score": e.score}


def board_json(b: pb.BoardInfo) -> dict[str, object]:
    return {
        "boardId": b.board_id,
        "name": b.name,
        "sortOrder": b.sort_order or "desc",
        "combine": b.combine or "sum",
        "resetSchedule": b.reset_schedule or None,
        "timeZone": b.time_zone or "UTC",
        "currentPeriod": b.current_period,
        "periodStartsAt": _iso(b.period_start_time, b.HasField("period_start_time")),
        "nextResetAt": _iso(b.next_reset_time, b.HasField("next_reset_time")),
        "seasonStartsAt": _iso(b.season_start_time, b.HasField("season_start_time")),
        "seasonEndsAt": _iso(b.season_end_time, b.HasField("season_end_time")),
        "keepPeriods": b.keep_periods,
        "lastClosedPeriod": b.last_closed_period or None,
        "lastWinners": [entry_json(e) for e in b.last_winners],
    }


def period_json(p: pb.PeriodInfo) -> dict[str, object]:
    return {
        "period": p.period,
        "startsAt": iso(p.start_time.ToDatetime(tzinfo=UTC)),
        "endsAt": _iso(p.end_time, p.HasField("end_time")),
        "closed": p.closed,
        "closedAt": _iso(p.close_time, p.HasField("close_time")),
        "entries": p.entries,
    }


async def _token(request: Request) -> str | None:
    principal = await optional_principal(request)  # a bad token is still refused
    return principal.token if principal is not None else None


async def _read(state: EdgeState, token: str | None, method: object, message: object) -> object:
    if token is None:
        return await state.upstream.call_as_edge(method, message)  # type: ignore[arg-type]
    return await state.upstream.call(method, message, token=token)  # type: ignore[arg-type]


async def list_boards(request: Request) -> Response:
    token = await _token(request)
    state = edge_state(request)
    boards: list[dict[str, object]] = []
    page = ""
    while len(boards) < _MAX_BOARDS:
        reply = await _read(
            state,
            token,
            state.upstream.leaderboard.ListBoards,
            pb.ListBoardsRequest(page_size=100, page_token=page),
        )
        assert isinstance(reply, pb.ListBoardsResponse)
        boards += [board_json(b) for b in reply.boards]
        page = reply.next_page_token
        if not page:
            break
    return ok(boards)


async def get_board(request: Request) -> Response:
    token = await _token(request)
    state = edge_state(request)
    board = board_id(request.path_params["boardId"], "boardId")
    reply = await _read(
        state, token, state.upstream.leaderboard.GetBoard, pb.GetBoardRequest(board_id=board)
    )
    assert isinstance(reply, pb.GetBoardResponse)
    return ok(board_json(reply.board))


def _page_size(request: Request) -> int:
    raw = request.query_params.get("pageSize")
    if raw is None:
        return 0
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise invalid("pageSize must be between 1 and 100")
    return int(raw)


def _page_token(request: Request) -> str:
    token = request.query_params.get("pageToken", "")
    if len(token) > 200:
        raise invalid("pageToken is not valid")
    return token


async def list_periods(request: Request) -> Response:
    token = await _token(request)
    state = edge_state(request)
    board = board_id(request.path_params["boardId"], "boardId")
    reply = await _read(
        state,
        token,
        state.upstream.leaderboard.ListPeriods,
        pb.ListPeriodsRequest(
            board_id=board, page_size=_page_size(request), page_token=_page_token(request)
        ),
    )
    assert isinstance(reply, pb.ListPeriodsResponse)
    return ok(
        {
            "periods": [period_json(p) for p in reply.periods],
            "nextPageToken": reply.next_page_token or None,
        }
    )


async def period_entries(request: Request) -> Response:
    token = await _token(request)
    state = edge_state(request)
    board = board_id(request.path_params["boardId"], "boardId")
    period = period_number(request.path_params["period"], current=False)
    user = request.query_params.get("userId", "")
    if user:
        try:
            user = str(uuid.UUID(user))
        except ValueError:
            raise invalid("userId must be a user id (UUID)") from None
    reply = await _read(
        state,
        token,
        state.upstream.leaderboard.ListPeriodEntries,
        pb.ListPeriodEntriesRequest(
            board_id=board,
            period=period,
            page_size=_page_size(request),
            page_token=_page_token(request),
            user_id=user,
        ),
    )
    assert isinstance(reply, pb.ListPeriodEntriesResponse)
    return ok(
        {
            "period": period_json(reply.period),
            "entries": [entry_json(e) for e in reply.entries],
            "nextPageToken": reply.next_page_token or None,
            "userEntry": entry_json(reply.user_entry) if reply.HasField("user_entry") else None,
        }
    )


_BOARD_PATH = Param(
    "boardId",
    "path",
    "The board's id.",
    required=True,
    schema={"type": "string", "pattern": BOARD_ID},
)
# The paging query parameters of the routes that list page by page.
PAGING = (
    Param(
        "pageSize",
        "query",
        "1-100, default 10",
        schema={"type": "integer", "minimum": 1, "maximum": 100},
    ),
    Param("pageToken", "query", "nextPageToken of the previous page"),
)
# The query parameters the leaderboard routes share.
BOARD_PARAMS = (
    Param(
        "board",
        "query",
        "The board's id; omit for the default board.",
        schema={"type": "string", "pattern": BOARD_ID},
    ),
    Param(
        "period",
        "query",
        "The board's period; omit (or 0) for the period open now. A closed period is read "
        "from its final standings.",
        schema={"type": "integer", "minimum": 0, "maximum": MAX_PERIOD},
    ),
)
ROUTES = [
    ApiRoute(
        "GET",
        "/api/boards",
        list_boards,
        "The boards, with their current period and next reset",
        "boards",
        auth="optional",
        response=Envelope[list[BoardInfo]],
        errors=(401,),
    ),
    ApiRoute(
        "GET",
        "/api/boards/{boardId}",
        get_board,
        "One board, with its current period, next reset and last period's winners",
        "boards",
        auth="optional",
        response=Envelope[BoardInfo],
        errors=(400, 401, 404),
        params=(_BOARD_PATH,),
    ),
    ApiRoute(
        "GET",
        "/api/boards/{boardId}/periods",
        list_periods,
        "A board's periods, newest first",
        "boards",
        auth="optional",
        response=Envelope[PeriodList],
        errors=(400, 401, 404),
        params=(_BOARD_PATH, *PAGING),
    ),
    ApiRoute(
        "GET",
        "/api/boards/{boardId}/periods/{period}/entries",
        period_entries,
        "A closed period's final standings, page by page",
        "boards",
        auth="optional",
        response=Envelope[PeriodEntries],
        errors=(400, 401, 404),
        description="An open period answers 400 PERIOD_NOT_CLOSED (read it from "
        "/api/leaderboard/entries?board=&period=). With userId, the page holding that user "
        "and its final entry (404 USER_NOT_FOUND when it has none).",
        params=(
            _BOARD_PATH,
            Param(
                "period",
                "path",
                "The period number (1 or more).",
                required=True,
                schema={"type": "integer", "minimum": 1, "maximum": MAX_PERIOD},
            ),
            *PAGING,
            Param(
                "userId",
                "query",
                "A user whose final entry to find.",
                schema={"type": "string", "format": "uuid"},
            ),
        ),
    ),
]
