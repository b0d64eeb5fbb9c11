"""StreamService: WatchTop10 over the shared hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from common.auth.principal import SCOPE_STREAM_WATCH, current_principal
from common.config import DEFAULT_BOARD
from common.errors import Reason, not_found, unavailable
from scoreboard.stream.v1 import stream_service_pb2 as pb
from scoreboard.stream.v1 import stream_service_pb2_grpc
from stream_service.hub import WATCHERS, SnapshotHub

Context = grpc.aio.ServicerContext[Any, Any]


class StreamServicer(stream_service_pb2_grpc.StreamServiceServicer):
    def __init__(self, hubs: dict[str, SnapshotHub]) -> None:
        self._hubs = hubs

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
