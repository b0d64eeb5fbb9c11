"""AdminService: protobuf <-> the admin store. Every method checks for an admin first, before
it looks at the request, so a non-admin learns nothing from it."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from typing import Any

import grpc
import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter

from common.auth.denylist import Denylist
from common.auth.principal import current_admin
from common.config import DEFAULT_BOARD
from common.errors import Reason, invalid, not_found
from common.logs import request_id_var
from common.timestamps import timestamp_pb
from score_service.admin_queries import AdminQueries
from score_service.admin_store import MAX_ADJUST, Act, AdminStore, UserRevocation
from score_service.anomaly_store import AnomalyRecord, AnomalyStore
from scoreboard.admin.v1 import admin_service_pb2 as pb
from scoreboard.admin.v1 import admin_service_pb2_grpc

log = logging.getLogger("scoreboard.score.admin")
Context = grpc.aio.ServicerContext[Any, Any]
# A ban waits this long at most for Redis to take its revocations.
_ANNOUNCE_SECONDS = 1.0
DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_REASON = 500
MAX_FILTER = 200

ADMIN_ACTS = Counter("scoreboard_admin_acts_total", "Admin changes made, by act.", ["act"])


def _admin_act(reason: str) -> Act:
    """The caller, who must be an admin, and a valid reason."""
    principal = current_admin()
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REASON:
        raise invalid(f"reason is required (1-{MAX_REASON} characters)")
    return Act(actor=principal.actor, reason=reason, request_id=request_id_var.get())


def _user_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid("user_id must be a user id (UUID)") from None


def _board(requested: str) -> str:
    board = requested or DEFAULT_BOARD
    if board != DEFAULT_BOARD:
        raise not_found(Reason.NOT_FOUND, f"no board {board}")
    return board


def _page_size(requested: int) -> int:
    if requested < 0:
        raise invalid("page_size must not be negative")
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


def _filter(name: str, value: str) -> str:
    if len(value) > MAX_FILTER:
        raise invalid(f"{name} must be at most {MAX_FILTER} characters")
    return value


def encode_token(listing: str, before: int) -> str:
    raw = orjson.dumps({"l": listing, "b": before})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(listing: str, token: str) -> int | None:
    """The id a page continues below; None for the first page."""
    if not token:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        before = int(data["b"])
        if data["l"] != listing or before < 1:
            raise ValueError
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise invalid("page_token is not valid") from None
    return before


def _next(listing: str, ids: list[int], size: int) -> str:
    return encode_token(listing, ids[-1]) if len(ids) == size else ""


def _anomaly(record: AnomalyRecord) -> pb.Anomaly:
    message = pb.Anomaly(
        anomaly_id=record.id,
        board_id=record.board_id,
        user_id=record.user_id,
        kind=record.kind,
        detail_json=orjson.dumps(record.detail).decode(),
        ledger_entry_id=record.ledger_entry_id or 0,
        create_time=timestamp_pb(record.created_at),
    )
    if record.reviewed_at is not None:
        message.review_time.CopyFrom(timestamp_pb(record.reviewed_at))
    return message


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        store: AdminStore,
        queries: AdminQueries,
        anomalies: AnomalyStore,
        revocations: Denylist | None = None,
    ) -> None:
        self._store = store
        self._queries = queries
        self._anomalies = anomalies
        self._revocations = revocations

    async def BanUser(self, request: pb.BanUserRequest, context: Context) -> pb.BanUserResponse:
        act = _admin_act(request.reason)
        user_id = _user_id(request.user_id)
        change = await self._store.set_banned(DEFAULT_BOARD, user_id, True, act)
        ADMIN_ACTS.labels("ban").inc()
        if change.revocation is not None:
            await self._announce(change.revocation)
        return pb.BanUserResponse(user_id=user_id, scores=change.states, audit_id=change.audit_id)

    async def UnbanUser(
        self, request: pb.UnbanUserRequest, context: Context
    ) -> pb.UnbanUserResponse:
        act = _admin_act(request.reason)
        user_id = _user_id(request.user_id)
        change = await self._store.set_banned(DEFAULT_BOARD, user_id, False, act)
        ADMIN_ACTS.labels("unban").inc()
        return pb.UnbanUserResponse(user_id=user_id, scores=change.states, audit_id=change.audit_id)

    async def _announce(self, revocation: UserRevocation) -> None:
        """Tell every verifier of a ban's revocations at once (they close the user's sockets and
        refuse its tokens). Redis not answering: auth_service's keeper copies them from
        PostgreSQL, where they are durable, once it answers; the ban still succeeds."""
        if self._revocations is None:
            return
        try:
            await asyncio.wait_for(
                self._revocations.add(
                    (), revocation.sessions, [(revocation.user_id, revocation.before)]
                ),
                _ANNOUNCE_SECONDS,
            )
        except (OSError, aioredis.RedisError, TimeoutError) as exc:
            log.warning(
                "ban's revocations not in Redis yet (auth_service copies them): %r",
                exc,
                extra={"user_id": revocation.user_id},
            )

    async def VoidLedgerEntry(
        self, request: pb.VoidLedgerEntryRequest, context: Context
    ) -> pb.VoidLedgerEntryResponse:
        act = _admin_act(request.reason)
        if request.entry_id <= 0:
            raise invalid("entry_id must be a ledger entry id")
        entry, score, audit_id = await self._store.void(request.entry_id, act)
        ADMIN_ACTS.labels("void").inc()
        return pb.VoidLedgerEntryResponse(entry=entry, score=score, audit_id=audit_id)

    async def AdjustScore(
        self, request: pb.AdjustScoreRequest, context: Context
    ) -> pb.AdjustScoreResponse:
        act = _admin_act(request.reason)
        user_id = _user_id(request.user_id)
        board = _board(request.board_id)
        if request.points == 0 or abs(request.points) > MAX_ADJUST:
            raise invalid(f"points must be non-zero and at most {MAX_ADJUST} either way")
        entry, score, audit_id = await self._store.adjust(board, user_id, request.points, act)
        ADMIN_ACTS.labels("adjust").inc()
        return pb.AdjustScoreResponse(entry=entry, score=score, audit_id=audit_id)

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: Context
    ) -> pb.ListLedgerEntriesResponse:
        current_admin()
        user_id = _user_id(request.user_id)
        board = _board(request.board_id)
        size = _page_size(request.page_size)
        entries = await self._queries.ledger(
            board, user_id, before=decode_token("ledger", request.page_token), limit=size
        )
        return pb.ListLedgerEntriesResponse(
            entries=entries, next_page_token=_next("ledger", [e.entry_id for e in entries], size)
        )

    async def ListAuditLog(
        self, request: pb.ListAuditLogRequest, context: Context
    ) -> pb.ListAuditLogResponse:
        current_admin()
        size = _page_size(request.page_size)
        entries = await self._queries.audit_log(
            actor=_filter("actor", request.actor),
            action=_filter("action", request.action),
            target=_filter("target", request.target),
            before=decode_token("audit", request.page_token),
            limit=size,
        )
        return pb.ListAuditLogResponse(
            entries=entries, next_page_token=_next("audit", [e.audit_id for e in entries], size)
        )

    async def ListAnomalies(
        self, request: pb.ListAnomaliesRequest, context: Context
    ) -> pb.ListAnomaliesResponse:
        current_admin()
        user_id = _user_id(request.user_id) if request.user_id else ""
        size = _page_size(request.page_size)
        anomalies = await self._queries.anomalies(
            user_id=user_id,
            include_reviewed=request.include_reviewed,
            before=decode_token("anomalies", request.page_token),
            limit=size,
        )
        return pb.ListAnomaliesResponse(
            anomalies=anomalies,
            next_page_token=_next("anomalies", [a.anomaly_id for a in anomalies], size),
        )

    async def ReviewAnomaly(
        self, request: pb.ReviewAnomalyRequest, context: Context
    ) -> pb.ReviewAnomalyResponse:
        principal = current_admin()
        if request.anomaly_id <= 0:
            raise invalid("anomaly_id must be an anomaly id")
        note = request.note.strip()
        if len(note) > MAX_REASON:
            raise invalid(f"note must be at most {MAX_REASON} characters")
        record, audit_id = await self._anomalies.review(
            request.anomaly_id, actor=principal.actor, note=note, request_id=request_id_var.get()
        )
        if audit_id:
            ADMIN_ACTS.labels("review").inc()
        return pb.ReviewAnomalyResponse(anomaly=_anomaly(record), audit_id=audit_id)
