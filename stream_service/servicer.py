"""StreamService: WatchTop10 over the board's shared snapshot hub (one per board in use),
WatchRank over the board's rank hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from common.auth.principal import SCOPE_STREAM_WATCH, Principal, current_principal
from common.config import DEFAULT_BOARD
from common.errors import Reason, ServiceError, invalid, not_found, unavailable
from scoreboard.stream.v1 import stream_service_pb2 as pb
from scoreboard.stream.v1 import stream_service_pb2_grpc
from stream_service.hub import WATCHERS, SnapshotHub
from stream_service.hubs import HubRegistry
from stream_service.rank_hub import RankHub
from stream_service.snapshots import Version

Context = grpc.aio.ServicerContext[Any, Any]


# The ErrorInfo reason of a WatchTop10 refused for the principal's concurrent-stream cap.
STREAM_LIMIT = "STREAM_LIMIT"
# How long a watch of one period waits for a new hub to learn the board's current period.
PERIOD_WAIT_SECONDS = 10.0


async def _check_period(hub: SnapshotHub, period: int) -> None:
    """A watch of one period: it must be the board's period open now."""
    try:
        async with asyncio.timeout(PERIOD_WAIT_SECONDS):
            await hub.period_known.wait()
    except TimeoutError:
        raise unavailable("the board's current period is not known yet; try again") from None
    if period < hub.period:
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION,
            Reason.PERIOD_ALREADY_CLOSED,
            f"period {period} of board {hub.board!r} is closed: read it with ListPeriodEntries",
        )
    if period > hub.period:
        raise invalid(f"period {period} of board {hub.board!r} has not started")


class StreamServicer(stream_service_pb2_grpc.StreamServiceServicer):
    def __init__(
        self,
        hubs: HubRegistry,
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
        if request.period < 0:
            raise invalid("period must not be negative (0: the period open now, followed)")
        if self._hubs.closed:
            # Draining: the caller retries, and reaches another replica or this one restarted.
            raise unavailable("stream_service is shutting down")
        board = request.board_id or DEFAULT_BOARD
        hub = await self._hubs.acquire(board)  # NOT_FOUND for a board nobody set up
        try:
            async for response in self._watch(hub, request.period, principal):
                yield response
        finally:
            self._hubs.release(board)

    async def _watch(
        self, hub: SnapshotHub, period: int, principal: Principal
    ) -> AsyncIterator[pb.WatchTop10Response]:
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
            if period:
                await _check_period(hub, period)
            sent: Version = (0, -1)
            while True:
                snapshot = await hub.wait_newer(sent)
                if snapshot is None:
                    return  # shutdown: the stream ends cleanly and the caller reconnects
                sent = (snapshot.period, snapshot.sequence)
                if period and snapshot.period != period:
                    if snapshot.period > period:
                        return  # the watched period closed
                    continue
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
