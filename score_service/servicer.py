"""ScoreService: protobuf <-> the scoring logic."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol

import grpc
from prometheus_client import Counter

from common.auth.principal import SCOPE_SCORES_WRITE, Principal, current_admin, current_principal
from common.config import DEFAULT_BOARD
from common.errors import Reason, ServiceError, forbidden, invalid
from common.logs import request_id_var
from score_service.catalog import ACTION_ID, CatalogAction, from_pb
from score_service.catalog_store import CatalogStore
from score_service.config import Settings
from score_service.ledger import Completion, Ledger
from score_service.tickets import MAX_TICKET_LENGTH, TicketIssuer
from scoreboard.score.v1 import score_service_pb2 as pb
from scoreboard.score.v1 import score_service_pb2_grpc

log = logging.getLogger("scoreboard.score")
Context = grpc.aio.ServicerContext[Any, Any]
PATH_HEADER = "x-scoreboard-path"
_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")

ACTIONS = Counter(
    "scoreboard_actions_total",
    "Completions by outcome (accepted or the refusal reason).",
    ["outcome"],
)


def _path(context: Context, principal: Principal) -> str:
    """Which path a completion came through, for the audit trail: "rest" when the edge says so,
    "admin" only for an admin, otherwise "grpc" (a direct call)."""
    for key, value in context.invocation_metadata() or ():
        if key == PATH_HEADER and (value == "rest" or (value == "admin" and principal.is_admin)):
            return str(value)
    return "grpc"


def _check_action_id(action_id: str) -> None:
    if not ACTION_ID.match(action_id):
        raise invalid("action_id must be 1-64 lowercase letters, digits, '-' or '_'")


def _value(request: pb.CompleteActionRequest, principal: Principal) -> int | None:
    """The reported value, accepted only from a game server: a service principal with the
    scores:write scope (users never report values, admins neither)."""
    if not request.HasField("value"):
        return None
    if not (principal.is_service and SCOPE_SCORES_WRITE in principal.scopes):
        raise forbidden(f"only a game server (a service with {SCOPE_SCORES_WRITE}) reports values")
    return request.value


def _user_id(user_id: str) -> str:
    """The canonical form of a requested user id ('' stays ''): the same user must never reach
    the ledger, the idempotency hash or the ranking under two spellings."""
    if not user_id:
        return ""
    if len(user_id) > 64:
        raise invalid("user_id must be a user id (UUID)")
    try:
        return str(uuid.UUID(user_id))
    except ValueError:
        raise invalid("user_id must be a user id (UUID)") from None


class ScoreServicer(score_service_pb2_grpc.ScoreServiceServicer):
    def __init__(
        self, settings: Settings, ledger: Ledger, tickets: TicketIssuer, catalog: CatalogStore
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._tickets = tickets
        self._catalog = catalog

    async def ListActions(
        self, request: pb.ListActionsRequest, context: Context
    ) -> pb.ListActionsResponse:
        principal = current_principal()
        user_id: str | None = principal.user_id
        requested = _user_id(request.user_id)
        if requested:
            user_id = principal.target_user(requested)
        if request.include_inactive:
            principal.require_admin()
        actions = await self._catalog.list(
            DEFAULT_BOARD, user_id=user_id, include_inactive=request.include_inactive
        )
        return pb.ListActionsResponse(actions=actions)

    async def StartAction(
        self, request: pb.StartActionRequest, context: Context
    ) -> pb.StartActionResponse:
        principal = current_principal()
        _check_action_id(request.action_id)
        user_id = principal.target_user(_user_id(request.user_id))
        return await self._tickets.start(
            DEFAULT_BOARD, user_id, request.action_id, self._settings.ticket_ttl_seconds
        )

    async def CompleteAction(
        self, request: pb.CompleteActionRequest, context: Context
    ) -> pb.CompleteActionResponse:
        principal = current_principal()
        try:
            _check_action_id(request.action_id)
            requested = _user_id(request.user_id)
            if request.idempotency_key and not _KEY.match(request.idempotency_key):
                raise invalid("idempotency_key must be 1-128 printable ASCII characters")
            if len(request.ticket) > MAX_TICKET_LENGTH:
                raise invalid("the ticket is too long", Reason.TICKET_INVALID)
            value = _value(request, principal)
            user_id = principal.target_user(requested)
            response = await self._ledger.complete(
                Completion(
                    board_id=DEFAULT_BOARD,
                    user_id=user_id,
                    action_id=request.action_id,
                    actor=principal.actor,
                    caller=principal.subject,
                    path=_path(context, principal),
                    request_id=request_id_var.get(),
                    idempotency_key=request.idempotency_key,
                    ticket=request.ticket,
                    deadline=self._deadline(context),
                    value=value,
                )
            )
        except ServiceError as error:
            ACTIONS.labels(error.reason).inc()
            raise
        ACTIONS.labels("replayed" if response.replayed else "accepted").inc()
        return response

    def _deadline(self, context: Context) -> float:
        """When the caller stops waiting (time.monotonic()); a caller without a deadline gets
        the group commit's default one."""
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self._settings.group_commit.default_deadline_seconds
        return time.monotonic() + remaining

    async def CreateAction(
        self, request: pb.CreateActionRequest, context: Context
    ) -> pb.CreateActionResponse:
        saved = await _admin_edit(self._catalog.create, request.action)
        return pb.CreateActionResponse(action=saved.to_pb())

    async def UpdateAction(
        self, request: pb.UpdateActionRequest, context: Context
    ) -> pb.UpdateActionResponse:
        saved = await _admin_edit(self._catalog.update, request.action)
        return pb.UpdateActionResponse(action=saved.to_pb())


class _CatalogEdit(Protocol):
    """CatalogStore.create or CatalogStore.update: stores the action and its audit row."""

    def __call__(
        self, action: CatalogAction, *, actor: str, request_id: str
    ) -> Awaitable[CatalogAction]: ...


async def _admin_edit(edit: _CatalogEdit, message: pb.Action) -> CatalogAction:
    """An admin's new or changed action of the catalog, as `edit` stored it."""
    principal = current_admin()
    action = from_pb(message, DEFAULT_BOARD)
    return await edit(action, actor=principal.actor, request_id=request_id_var.get())
