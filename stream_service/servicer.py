"""StreamService: WatchTop10 over the shared snapshot hub, WatchRank over the board's rank hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from common.auth.principal import SCOPE_STREAM_WATCH, current_principal
from common.config import DEFAULT_BOARD
from common.errors import Reason, ServiceError, not_found, unavailable
from scoreboard.stream.v1 import stream_service_pb2 as pb
from scoreboard.stream.v1 import stream_service_pb2_grpc
from stream_service.hub import WATCHERS, SnapshotHub
from stream_service.rank_hub import RankHub

Context = grpc.aio.ServicerContext[Any, Any]


# The ErrorInfo reason of a WatchTop10 refused for the principal's concurrent-stream cap.
STREAM_LIMIT = "STREAM_LIMIT"


class StreamServicer(stream_service_pb2_grpc.StreamServiceServicer):
    def __init__(
        self,
        hubs: dict[str, SnapshotHub],
        rank_hubs: dict[str, RankHub] | None = None,
        *,
        per_principal: int = 5,
        per_service: int = 1000,
    ) -> None:
        self._hubs = hubs
        self._rank_hubs = rank_hubs or {}
        # Open WatchTop10 streams by principal subject, capped (users and services apart).
        self._per_principal = per_principal
        self._per_service = per_service
        self._watching: dict[str, int] = {}

    async def WatchTop10(
        self, request: pb.WatchTop10Request, context: Context
    ) -> AsyncIterator[pb.WatchTop10Response]:
        principal = current_principal()
        if principal.is_service:
            principal.require_scope(SCOPE_STREAM_WATCH)
        hub = self._hubs.get(request.board_id or DEFAULT_BOARD)
        if hub is None:
            raise not_found(Reason.NOT_FOUND, f"no board {request.board_id}")
        if hub.closed:
            # Draining: the caller retries, and reaches another replica or this one restarted.
            raise unavailable("stream_service is shutting down")
        subject = principal.subject
        cap = self._per_service if principal.is_service else self._per_principal
        open_streams = self._watching.get(subject, 0)
        if open_streams >= cap:
            raise ServiceError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                STREAM_LIMIT,
                f"at most {cap} concurrent WatchTop10 streams per caller; close one first",
                {"limit": str(cap)},
            )
        self._watching[subject] = open_streams + 1
        WATCHERS.inc()
        try:
            sent = -1
            while True:
                snapshot = await hub.wait_newer(sent)
                if snapshot is None:
                    return  # shutdown: the stream ends cleanly and the caller reconnects
                sent = snapshot.sequence
                yield pb.WatchTop10Response(snapshot=snapshot)
        finally:
            WATCHERS.dec()
            left = self._watching[subject] - 1
            if left:
                self._watching[subject] = left
            else:
                del self._watching[subject]

    async def WatchRank(
        self, request: pb.WatchRankRequest, context: Context
    ) -> AsyncIterator[pb.WatchRankResponse]:
        principal = current_principal()
        # A user watches only itself; a service token with stream:watch may name any user.
        user_id = principal.target_user(request.user_id, SCOPE_STREAM_WATCH)
        if principal.is_service:
            principal.require_scope(SCOPE_STREAM_WATCH)
        hub = self._rank_hubs.get(request.board_id or DEFAULT_BOARD)
        if hub is None:
            raise not_found(Reason.NOT_FOUND, f"no board {request.board_id}")
        if hub.closed:
            raise unavailable("stream_service is shutting down")
        watch = await hub.watch(user_id)
        try:
            while True:
                update = await watch.next()
                if update is None:
                    return  # shutdown: the stream ends cleanly and the caller reconnects
                yield pb.WatchRankResponse(update=update)
        finally:
            hub.unwatch(watch)
