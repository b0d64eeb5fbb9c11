"""The leaderboard over HTTP (the fallback for clients without WebSockets). Every route reads
the default board's open period unless ?board=ID and &period=N say otherwise."""

from __future__ import annotations

import hashlib
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import Response

from common.errors import invalid
from edge.api import ApiRoute, Param
from edge.bodies import read_json
from edge.limits import enforce
from edge.responses import JSON, iso, ok
from edge.routes.boards import BOARD_PARAMS, PAGING, board_query, entry_json
from edge.schemas import (
    EntriesAround,
    EntryPage,
    Envelope,
    Leaderboard,
    UserRank,
    UsersRanks,
    UsersRanksBody,
)
from edge.state import client_address, edge_state, optional_principal, require_principal
from scoreboard.leaderboard.v1 import leaderboard_pb2
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as pb

CACHE = "public, max-age=5"
DEEP_PAGES_LIMIT = "anonymous-deep-pages"


def _not_modified(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison, and "*" matches any current representation."""
    if if_none_match.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in if_none_match.split(","))


def _cached(request: Request, body: bytes, etag: str) -> Response:
    headers = {"Cache-Control": CACHE, "ETag": etag, "Vary": "Accept-Encoding"}
    if _not_modified(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def leaderboard(request: Request) -> Response:
    await optional_principal(request)  # optional, but a bad token is still refused
    state = edge_state(request)
    board_id, period = board_query(request)
    live = state.boards.get(board_id) if period == 0 else None
    if live is not None and live.latest is not None:
        # A live stream keeps the board's current top 10 in memory, already encoded.
        return _cached(request, live.latest.http_body, live.latest.etag)
    reply = await state.upstream.call_as_edge(
        state.upstream.leaderboard.ListEntries,
        pb.ListEntriesRequest(board_id=board_id, period=period, page_size=10),
    )
    stamp = iso(reply.update_time.ToDatetime()) if reply.update_time.seconds else None
    body = orjson.dumps(
        {
            "success": True,
            "data": {
                "top10": [entry_json(e) for e in reply.entries],
                "lastUpdated": stamp,
                "sequence": 0,
                "board": board_id,
                "period": reply.period or period or None,
            },
        }
    )
    return _cached(request, body, '"' + hashlib.sha256(body).hexdigest()[:24] + '"')


def _user_id(request: Request) -> str:
    try:
        return str(uuid.UUID(request.path_params["userId"]))
    except ValueError:
        raise invalid("userId must be a user id (UUID)") from None


async def user_rank(request: Request) -> Response:
    principal = await require_principal(request)
    state = edge_state(request)
    board_id, period = board_query(request)
    reply = await state.upstream.call(
        state.upstream.leaderboard.GetUserRank,
        pb.GetUserRankRequest(user_id=_user_id(request), board_id=board_id, period=period),
        token=principal.token,
    )
    return ok(
        {
            "userId": reply.entry.user_id,
            "username": reply.entry.username,
            "rank": reply.entry.rank,
            "score": reply.entry.score,
            "inTop10": reply.in_top10,
            "distanceFromTop10": reply.distance_from_top10,
            "totalUsers": reply.total_users,
            "percentile": reply.percentile if reply.HasField("percentile") else None,
            "tier": _tier(reply.entry),
        }
    )


def _tier(
    e: leaderboard_pb2.LeaderboardEntry | leaderboard_pb2.UserListEntry,
) -> dict[str, str] | None:
    if not e.HasField("tier"):
        return None
    return {"id": e.tier.tier_id, "name": e.tier.name}


def _listed(e: leaderboard_pb2.UserListEntry) -> dict[str, object]:
    if not e.ranked:
        return {
            "userId": e.user_id,
            "ranked": False,
            "rank": None,
            "listRank": None,
            "username": None,
            "score": None,
            "tier": None,
        }
    return {
        "userId": e.user_id,
        "ranked": True,
        "rank": e.rank,
        "listRank": e.list_rank,
        "username": e.username,
        "score": e.score,
        "tier": _tier(e),
    }


def _user_ids(values: list[str]) -> list[str]:
    ids: list[str] = []
    for index, value in enumerate(values):
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            raise invalid(f"userIds[{index}] must be a user id (UUID)") from None
    return ids


async def users_ranks(request: Request) -> Response:
    principal = await require_principal(request)
    state = edge_state(request)
    body = await read_json(request, UsersRanksBody)
    # LeaderboardService adds the caller to the list.
    reply = await state.upstream.call(
        state.upstream.leaderboard.ListEntriesForUsers,
        pb.ListEntriesForUsersRequest(board_id=body.board or "", user_ids=_user_ids(body.userIds)),
        token=principal.token,
    )
    return ok({"entries": [_listed(e) for e in reply.entries], "totalUsers": reply.total_users})


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A bounded integer query parameter (out of range is a 400, never an overflow)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be a number") from None
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}")
    return value


async def around_user(request: Request) -> Response:
    principal = await require_principal(request)
    state = edge_state(request)
    count = _int_query(request, "count", 5, 0, 50)
    board_id, period = board_query(request)
    reply = await state.upstream.call(
        state.upstream.leaderboard.ListEntriesAround,
        pb.ListEntriesAroundRequest(
            user_id=_user_id(request), count=count, board_id=board_id, period=period
        ),
        token=principal.token,
    )
    return ok({"entries": [entry_json(e) for e in reply.entries]})


async def entries(request: Request) -> Response:
    principal = await optional_principal(request)
    state = edge_state(request)
    size = _int_query(request, "pageSize", 10, 1, 100)
    page_token = request.query_params.get("pageToken", "")
    if principal is None and page_token:
        # Past the first page (the top 100 at most) anonymous reads are limited per address.
        await enforce(
            state,
            DEEP_PAGES_LIMIT,
            client_address(request),
            state.settings.anonymous_deep_pages_per_minute,
        )
    board_id, period = board_query(request)
    message = pb.ListEntriesRequest(
        board_id=board_id, period=period, page_size=size, page_token=page_token
    )
    if principal is None:
        reply = await state.upstream.call_as_edge(state.upstream.leaderboard.ListEntries, message)
    else:
        reply = await state.upstream.call(
            state.upstream.leaderboard.ListEntries, message, token=principal.token
        )
    return JSON(
        {
            "success": True,
            "data": {
                "entries": [entry_json(e) for e in reply.entries],
                "nextPageToken": reply.next_page_token or None,
                "totalUsers": reply.total_users,
            },
        }
    )


_USER = Param(
    "userId", "path", "The user's id.", required=True, schema={"type": "string", "format": "uuid"}
)
ROUTES = [
    ApiRoute(
        "GET",
        "/api/leaderboard",
        leaderboard,
        "The current top 10",
        "leaderboard",
        auth="optional",
        response=Envelope[Leaderboard],
        errors=(400, 401, 404),
        description="Cacheable for 5 seconds; send If-None-Match with the ETag for a 304. "
        "?board= picks a board (404 NOT_FOUND when there is none), &period= a closed period's "
        "final top 10.",
        params=BOARD_PARAMS,
    ),
    ApiRoute(
        "GET",
        "/api/leaderboard/entries",
        entries,
        "The ranking, page by page",
        "leaderboard",
        auth="optional",
        response=Envelope[EntryPage],
        errors=(400, 401, 404, 429),
        description="Without a token, pages past the first (those with a pageToken) are limited "
        "per client address (SCOREBOARD_ANONYMOUS_DEEP_PAGES_PER_MINUTE).",
        params=(*PAGING, *BOARD_PARAMS),
    ),
    ApiRoute(
        "GET",
        "/api/leaderboard/user/{userId}",
        user_rank,
        "One user's rank",
        "leaderboard",
        auth="required",
        response=Envelope[UserRank],
        errors=(400, 401, 404),
        params=(_USER, *BOARD_PARAMS),
    ),
    ApiRoute(
        "POST",
        "/api/leaderboard/users",
        users_ranks,
        "Chosen users' ranks (friends, a group)",
        "leaderboard",
        auth="required",
        body=UsersRanksBody,
        response=Envelope[UsersRanks],
        errors=(400, 401, 404),
        description="Each user with its rank on the board and within the list; the caller is "
        "added, users without a score are listed unranked.",
    ),
    ApiRoute(
        "GET",
        "/api/leaderboard/user/{userId}/around",
        around_user,
        "The entries just above and below a user",
        "leaderboard",
        auth="required",
        response=Envelope[EntriesAround],
        errors=(400, 401, 404),
        params=(
            _USER,
            Param(
                "count",
                "query",
                "entries each side, 0-50 (default 5)",
                schema={"type": "integer", "minimum": 0, "maximum": 50},
            ),
            *BOARD_PARAMS,
        ),
    ),
]
