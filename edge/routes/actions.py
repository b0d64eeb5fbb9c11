"""The action catalog and completing actions (ScoreService behind)."""

from __future__ import annotations

import re

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import Response

from common.auth.principal import Principal
from common.errors import Reason, ServiceError
from edge.api import ApiRoute, Param
from edge.bodies import HttpError, read_json
from edge.limits import WINDOW_SECONDS, decide, enforce
from edge.responses import error, from_service_error, iso, ok
from edge.schemas import (
    ActionList,
    CompleteActionBody,
    CompleteActionResult,
    Envelope,
    StartActionBody,
    StartActionResult,
)
from edge.state import EdgeState, edge_state, optional_principal, require_principal
from scoreboard.score.v1 import score_service_pb2 as pb

_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
RATE_LIMIT_NAME = "actions"


def _time(stamp: Timestamp) -> str | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    return iso(stamp.ToDatetime())


def _action(action: pb.Action, signed_in: bool) -> dict[str, object]:
    return {
        "actionId": action.action_id,
        "name": action.name,
        "description": action.description,
        "points": action.points,
        "dailyLimit": action.daily_limit,
        "cooldownSeconds": action.cooldown.seconds,
        "requiresTicket": action.requires_ticket,
        "minDurationSeconds": action.min_duration.seconds,
        "remainingToday": action.remaining_today if signed_in else None,
        "availableAt": _time(action.available_time) if signed_in else None,
    }


async def list_actions(request: Request) -> Response:
    principal = await optional_principal(request)
    state = edge_state(request)
    if principal is None:
        reply = await state.upstream.call_as_edge(
            state.upstream.score.ListActions, pb.ListActionsRequest()
        )
    else:
        reply = await state.upstream.call(
            state.upstream.score.ListActions, pb.ListActionsRequest(), token=principal.token
        )
    signed_in = principal is not None and principal.user_id is not None
    return ok({"actions": [_action(a, signed_in) for a in reply.actions]})


def _rate_headers(limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
    reset = max(0, -(-reset_ms // 1000))
    return {
        "RateLimit-Policy": f'"actions";q={limit};w={WINDOW_SECONDS}',
        "RateLimit": f'"actions";r={remaining};t={reset}',
    }


async def complete_action(request: Request) -> Response:
    principal = await require_principal(request)
    state = edge_state(request)
    # Scoring stays protected by the daily limits, cooldowns and tickets in PostgreSQL when
    # this limit falls back to each replica's own window.
    decision = await decide(
        state, RATE_LIMIT_NAME, principal.subject, state.settings.actions_per_minute
    )
    headers = _rate_headers(decision.limit, decision.remaining, decision.reset_ms)
    if not decision.allowed:
        retry = decision.retry_after_seconds
        return error(
            429,
            f"Rate limit exceeded. Try again in {retry} seconds.",
            Reason.RATE_LIMITED,
            headers={**headers, "Retry-After": str(retry)},
        )
    # Every answer of this route past the limiter says how much budget is left.
    try:
        response = await _complete(request, state, principal)
    except ServiceError as exc:
        response = from_service_error(exc)
    except HttpError as exc:
        response = error(exc.status, exc.message, exc.code, exc.headers)
    response.headers.update(headers)
    return response


async def _complete(request: Request, state: EdgeState, principal: Principal) -> Response:
    body = await read_json(request, CompleteActionBody, refuse_points=True)
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.match(key):
        raise HttpError(
            400, Reason.INVALID_ARGUMENT, "Idempotency-Key must be 1-128 printable characters"
        )
    # The edge never retries CompleteAction, so it sends a key only when the client gave one.
    reply = await state.upstream.call(
        state.upstream.score.CompleteAction,
        pb.CompleteActionRequest(
            action_id=body.actionId,
            idempotency_key=key or "",
            ticket=body.ticket or "",
        ),
        token=principal.token,
        extra=(("x-scoreboard-path", "rest"),),
    )
    data = {
        "newScore": reply.new_score,
        "increment": reply.increment,
        "rank": reply.rank,
        "message": reply.message,
    }
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else None
    return ok(data, headers=headers)


async def start_action(request: Request) -> Response:
    principal = await require_principal(request)
    state = edge_state(request)
    await enforce(state, "start", principal.subject, state.settings.starts_per_minute)
    body = await read_json(request, StartActionBody)
    reply = await state.upstream.call(
        state.upstream.score.StartAction,
        pb.StartActionRequest(action_id=body.actionId),
        token=principal.token,
    )
    return ok(
        {
            "ticket": reply.ticket,
            "notBefore": _time(reply.not_before_time),
            "expiresAt": _time(reply.expire_time),
        }
    )


ROUTES = [
    ApiRoute(
        "GET",
        "/api/actions",
        list_actions,
        "The action catalog",
        "actions",
        auth="optional",
        response=Envelope[ActionList],
        errors=(401,),
        description="Signed in, each action also says how many completions count today.",
    ),
    ApiRoute(
        "POST",
        "/api/actions/complete",
        complete_action,
        "Complete an action",
        "actions",
        auth="required",
        body=CompleteActionBody,
        response=Envelope[CompleteActionResult],
        errors=(400, 401, 403, 409, 413, 415, 422, 429),
        params=(
            Param(
                "Idempotency-Key",
                "header",
                "A retry with the same key and body replays the first response.",
            ),
        ),
        description="Points are computed by the server; a body that claims points is refused. "
        "Rate limited to 100 requests per minute per user.",
    ),
    ApiRoute(
        "POST",
        "/api/actions/start",
        start_action,
        "Get a ticket for a timed action",
        "actions",
        auth="required",
        body=StartActionBody,
        response=Envelope[StartActionResult],
        errors=(400, 401, 403, 422, 429),
    ),
]
