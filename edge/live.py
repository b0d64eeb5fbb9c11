"""The edge's upstream WatchTop10 streams, one per board in use (edge.live_boards opens and closes
them): each reconnects with exponential backoff and full
jitter when stream_service restarts, and turns each snapshot into the encoded forms the edge
serves (the WebSocket frame, the GET /api/leaderboard body and its ETag) exactly once. And the
WatchRank streams of the signed-in viewers who asked for their live rank (RankFeeds)."""

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

from common.config import DEFAULT_BOARD
from common.grpc_client import call_metadata
from edge.fanout import Frame
from edge.responses import iso
from edge.upstream import Upstream
from edge.ws_messages import leaderboard_update, rank_update, text_frame
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

    board: str
    period: int
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
    board = snapshot.board_id or DEFAULT_BOARD
    period = snapshot.period or 1
    message = leaderboard_update(top10, stamp, snapshot.sequence, board, period)
    http_body = orjson.dumps(
        {
            "success": True,
            "data": {
                "top10": top10,
                "lastUpdated": stamp,
                "sequence": snapshot.sequence,
                "board": board,
                "period": period,
            },
        }
    )
    return Board(
        board=board,
        period=period,
        sequence=snapshot.sequence,
        commit_us=commit_us,
        top10=top10,
        last_updated=stamp,
        frame=Frame(snapshot.sequence, text_frame(message), commit_us, period),
        http_body=http_body,
        etag='"' + hashlib.sha256(http_body).hexdigest()[:24] + '"',
    )


class LiveBoard:
    """The edge's WatchTop10 stream of one board. A stream that worked for a while and then
    ended (maximum connection age, a draining replica) is reopened at once; failures back off
    exponentially with full jitter, so edges spread out when stream_service restarts. Viewers
    stay connected meanwhile; the new stream starts with the current snapshot, and only a newer
    one than the edge holds (by period, then sequence) is passed on."""

    def __init__(
        self,
        upstream: Upstream,
        on_board: Callable[[Board], None],
        *,
        max_backoff_seconds: float = 5.0,
        healthy_after_seconds: float = 1.0,
        board: str = DEFAULT_BOARD,
    ) -> None:
        self.board = board
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
                    stream_service_pb2.WatchTop10Request(board_id=self.board),
                    metadata=call_metadata(token),
                )
                async for reply in call:
                    if opened_at is None:
                        opened_at = time.monotonic()
                        self.streams_opened += 1
                        self.connected.set()
                        if self.board == DEFAULT_BOARD:
                            UPSTREAM_CONNECTED.set(1)
                    self._offer(reply.snapshot)
                log.info("WatchTop10 ended; reconnecting")
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    self._upstream.service_token.invalidate()
                log.warning("WatchTop10 failed: %s", exc.code().name, extra={"board": self.board})
            except Exception as exc:  # the token fetch may fail while auth_service restarts
                log.warning("WatchTop10 cannot start: %s", exc)
            self.connected.clear()
            if self.board == DEFAULT_BOARD:
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
        latest = self.latest
        if latest is not None and (snapshot.period, snapshot.sequence) <= (
            latest.period,
            latest.sequence,
        ):
            return
        board = encode(snapshot)
        if board.commit_us:
            PROPAGATION.observe(max(0.0, time.time() - board.commit_us / 1e6))
        self.latest = board
        self._on_board(board)


_RANK_REASONS = {
    stream_service_pb2.RANK_REASON_INITIAL: "initial",
    stream_service_pb2.RANK_REASON_SELF: "self",
    stream_service_pb2.RANK_REASON_OVERTAKEN: "overtaken",
    stream_service_pb2.RANK_REASON_THRESHOLD: "threshold",
    stream_service_pb2.RANK_REASON_MOVED: "moved",
}
RANK_STREAMS = Gauge("scoreboard_edge_rank_streams", "Open upstream WatchRank streams.")


def rank_frame(update: stream_service_pb2.RankUpdate) -> bytes:
    """The RANK_UPDATE frame of an update (encoded once, sent to each of the user's sockets)."""
    change = update.change_time
    return text_frame(
        rank_update(
            {
                "board": update.board_id,
                "period": update.period,
                "userId": update.user_id,
                "rank": update.rank or None,
                "score": update.score,
                "totalPlayers": update.total_players,
                "percentile": update.percentile if update.HasField("percentile") else None,
                "tier": (
                    {"id": update.tier, "name": update.tier_name}
                    if update.HasField("tier")
                    else None
                ),
                "distanceToNext": (
                    update.distance_to_next if update.HasField("distance_to_next") else None
                ),
                "reason": _RANK_REASONS.get(update.reason, "unknown"),
                "overtakenBy": (
                    {
                        "userId": update.overtaken_by.user_id,
                        "username": update.overtaken_by.username,
                    }
                    if update.HasField("overtaken_by")
                    else None
                ),
                "crossed": list(update.crossed),
                "timestamp": (
                    iso(change.ToDatetime(tzinfo=UTC)) if update.HasField("change_time") else None
                ),
            }
        )
    )


class _RankFeed:
    """One upstream WatchRank stream for one user and board, shared by that user's sockets."""

    def __init__(self, feeds: RankFeeds, user_id: str, board: str) -> None:
        self.user_id = user_id
        self.board = board
        self.sinks: dict[object, Callable[[bytes], object]] = {}
        self.latest: bytes | None = None
        self._feeds = feeds
        self.task = asyncio.create_task(self._run(), name=f"watch-rank:{user_id}")

    async def _run(self) -> None:
        upstream = self._feeds.upstream
        failures = 0
        while True:
            opened_at: float | None = None
            try:
                token = await upstream.service_token.token()
                call = upstream.stream.WatchRank(
                    stream_service_pb2.WatchRankRequest(board_id=self.board, user_id=self.user_id),
                    metadata=call_metadata(token),
                )
                RANK_STREAMS.inc()
                try:
                    async for reply in call:
                        opened_at = opened_at or time.monotonic()
                        self.latest = rank_frame(reply.update)
                        for sink in tuple(self.sinks.values()):
                            sink(self.latest)
                finally:
                    RANK_STREAMS.dec()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    upstream.service_token.invalidate()
                log.warning("WatchRank failed: %s", exc.code().name)
            except Exception as exc:  # the token fetch may fail while auth_service restarts
                log.warning("WatchRank cannot start: %s", exc)
            if opened_at is not None and time.monotonic() - opened_at >= 1.0:
                failures = 0
                continue
            failures += 1
            await asyncio.sleep(random.uniform(0, min(5.0, 0.1 * 2 ** min(failures, 10))))


class RankFeeds:
    """The edge's WatchRank streams (asked with its own service identity, naming the user): one
    per user and board with a subscribed socket on this process, ended when the last one
    leaves. Each update is encoded once and written to that user's subscribed sockets only."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._feeds: dict[tuple[str, str], _RankFeed] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    def subscribe(
        self, key: object, user_id: str, board: str, sink: Callable[[bytes], object]
    ) -> None:
        """`sink` gets every RANK_UPDATE frame of the user's rank on the board (the latest at
        once when the stream is already open). A key subscribes to one board at a time."""
        self.unsubscribe(key)
        feed = self._feeds.get((user_id, board))
        if feed is None:
            feed = self._feeds[(user_id, board)] = _RankFeed(self, user_id, board)
        feed.sinks[key] = sink
        if feed.latest is not None:
            sink(feed.latest)

    def unsubscribe(self, key: object) -> None:
        for ident, feed in tuple(self._feeds.items()):
            if feed.sinks.pop(key, None) is not None and not feed.sinks:
                feed.task.cancel()
                del self._feeds[ident]

    def close(self) -> None:
        for feed in self._feeds.values():
            feed.task.cancel()
        self._feeds.clear()
