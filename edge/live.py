"""The edge's one upstream WatchTop10 stream: reconnects with exponential backoff and full
jitter when stream_service restarts, and turns each snapshot into the encoded forms the edge
serves (the WebSocket frame, the GET /api/leaderboard body and its ETag) exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import grpc
import orjson
from prometheus_client import Counter, Gauge, Histogram

from common.grpc_client import call_metadata
from edge.fanout import Frame
from edge.responses import iso
from edge.upstream import Upstream
from edge.ws_messages import leaderboard_update, text_frame
from scoreboard.leaderboard.v1 import leaderboard_pb2
from scoreboard.stream.v1 import stream_service_pb2

log = logging.getLogger("scoreboard.edge.live")

UPSTREAM_CONNECTED = Gauge("scoreboard_edge_upstream_connected", "1 while WatchTop10 is open.")
UPSTREAM_RECONNECTS = Counter("scoreboard_edge_upstream_reconnects_total", "WatchTop10 reconnects.")
PROPAGATION = Histogram(
    "scoreboard_propagation_seconds",
    "Commit of the newest change in a snapshot to its arrival at the edge.",
    buckets=(0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5),
)


@dataclass(frozen=True)
class Board:
    """One snapshot in every form the edge serves it."""

    sequence: int
    commit_us: int
    top10: list[dict[str, Any]]
    last_updated: str | None
    frame: Frame
    http_body: bytes
    etag: str


def encode(snapshot: leaderboard_pb2.Top10Snapshot) -> Board:
    top10 = [
        {"rank": e.rank, "userId": e.user_id, "username": e.username, "score": e.score}
        for e in snapshot.entries
    ]
    commit_us = snapshot.commit_time.seconds * 1_000_000 + snapshot.commit_time.nanos // 1000
    stamp = iso(snapshot.commit_time.ToDatetime(tzinfo=UTC)) if commit_us else None
    message = leaderboard_update(top10, stamp, snapshot.sequence)
    http_body = orjson.dumps(
        {
            "success": True,
            "data": {"top10": top10, "lastUpdated": stamp, "sequence": snapshot.sequence},
        }
    )
    return Board(
        sequence=snapshot.sequence,
        commit_us=commit_us,
        top10=top10,
        last_updated=stamp,
        frame=Frame(snapshot.sequence, text_frame(message), commit_us),
        http_body=http_body,
        etag='"' + hashlib.sha256(http_body).hexdigest()[:24] + '"',
    )


class LiveBoard:
    """The edge's one WatchTop10 stream. A stream that worked for a while and then ended (maximum
    connection age, a draining replica) is reopened at once; failures back off exponentially
    with full jitter, so edges spread out when stream_service restarts. Viewers stay connected
    meanwhile; the new stream starts with the current snapshot, and only a newer one than the
    edge holds is passed on."""

    def __init__(
        self,
        upstream: Upstream,
        on_board: Callable[[Board], None],
        *,
        max_backoff_seconds: float = 5.0,
        healthy_after_seconds: float = 1.0,
    ) -> None:
        self._upstream = upstream
        self._on_board = on_board
        self._max_backoff = max_backoff_seconds
        self._healthy_after = healthy_after_seconds
        self.latest: Board | None = None
        self.connected = asyncio.Event()
        self.streams_opened = 0

    async def run(self) -> None:
        failures = 0
        while True:
            opened_at: float | None = None
            try:
                token = await self._upstream.service_token.token()
                call = self._upstream.stream.WatchTop10(
                    stream_service_pb2.WatchTop10Request(), metadata=call_metadata(token)
                )
                async for reply in call:
                    if opened_at is None:
                        opened_at = time.monotonic()
                        self.streams_opened += 1
                        self.connected.set()
                        UPSTREAM_CONNECTED.set(1)
                    self._offer(reply.snapshot)
                log.info("WatchTop10 ended; reconnecting")
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    self._upstream.service_token.invalidate()
                log.warning("WatchTop10 failed: %s", exc.code().name)
            except Exception as exc:  # the token fetch may fail while auth_service restarts
                log.warning("WatchTop10 cannot start: %s", exc)
            self.connected.clear()
            UPSTREAM_CONNECTED.set(0)
            UPSTREAM_RECONNECTS.inc()
            if opened_at is not None and time.monotonic() - opened_at >= self._healthy_after:
                failures = 0
                continue
            failures += 1
            # Exponential backoff with full jitter: spread edges out after a restart.
            cap = min(self._max_backoff, 0.1 * 2 ** min(failures, 10))
            await asyncio.sleep(random.uniform(0, cap))

    def _offer(self, snapshot: leaderboard_pb2.Top10Snapshot) -> None:
        if self.latest is not None and snapshot.sequence <= self.latest.sequence:
            return
        board = encode(snapshot)
        if board.commit_us:
            PROPAGATION.observe(max(0.0, time.time() - board.commit_us / 1e6))
        self.latest = board
        self._on_board(board)
