"""The edge's gRPC clients: one channel per service, typed stubs, the edge's own service token,
and one way to call that maps failures to the error contract and gives every call a deadline
(Settings.upstream_timeout_seconds; only the live WatchTop10 stream, in edge.live, has none)."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from common.auth.principal import SCOPE_LEADERBOARD_READ, SCOPE_STREAM_WATCH
from common.auth.service_token import ServiceTokenSource
from common.config import ClientCredentials, Endpoints
from common.errors import deadline_exceeded, from_rpc_error
from common.grpc_client import call_metadata, open_channel
from scoreboard.auth.v1 import auth_service_pb2_grpc
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2_grpc
from scoreboard.stream.v1 import stream_service_pb2_grpc

if TYPE_CHECKING:
    from scoreboard.auth.v1.auth_service_pb2_grpc import AuthServiceAsyncStub
    from scoreboard.leaderboard.v1.leaderboard_service_pb2_grpc import LeaderboardServiceAsyncStub
    from scoreboard.score.v1.score_service_pb2_grpc import ScoreServiceAsyncStub
    from scoreboard.stream.v1.stream_service_pb2_grpc import StreamServiceAsyncStub

Resp = TypeVar("Resp")
DEFAULT_TIMEOUT = 5.0
# When the HTTP request being served started (time.monotonic()), set by the request middleware:
# the upstream calls of one request share its budget, so the edge's own work before them (rate
# limit, ticket checks) cannot push the answer past the deadline.
request_started_var: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_started", default=None
)
# Below this much time left, a call is not started: the answer is already late.
_MIN_CALL_SECONDS = 0.05


@dataclass
class Upstream:
    channels: list[grpc.aio.Channel]
    auth: AuthServiceAsyncStub
    score: ScoreServiceAsyncStub
    leaderboard: LeaderboardServiceAsyncStub
    stream: StreamServiceAsyncStub
    service_token: ServiceTokenSource
    # The deadline of every call that names none, in seconds.
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def connect(
        cls,
        endpoints: Endpoints,
        credentials: ClientCredentials,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Upstream:
        auth_ch = open_channel(endpoints.auth)
        score_ch = open_channel(endpoints.score)
        board_ch = open_channel(endpoints.leaderboard)
        stream_ch = open_channel(endpoints.stream)
        auth = auth_service_pb2_grpc.AuthServiceStub(auth_ch)
        return cls(
            channels=[auth_ch, score_ch, board_ch, stream_ch],
            auth=auth,
            score=score_service_pb2_grpc.ScoreServiceStub(score_ch),
            leaderboard=leaderboard_service_pb2_grpc.LeaderboardServiceStub(board_ch),
            stream=stream_service_pb2_grpc.StreamServiceStub(stream_ch),
            service_token=ServiceTokenSource(
                auth, credentials, scopes=(SCOPE_LEADERBOARD_READ, SCOPE_STREAM_WATCH)
            ),
            timeout=timeout,
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def call(
        self,
        method: Callable[..., Awaitable[Resp]],
        request: Any,
        *,
        token: str | None,
        extra: tuple[tuple[str, str], ...] = (),
        timeout: float | None = None,
    ) -> Resp:
        """Call with the caller's token (or none) and a deadline (within an HTTP request, what is
        left of the request's budget); errors become ServiceError (a passed deadline:
        DEADLINE_EXCEEDED, with a retry_after)."""
        budget = self.timeout if timeout is None else timeout
        started = request_started_var.get()
        if started is not None:
            budget = min(budget, self.timeout - (time.monotonic() - started))
            if budget < _MIN_CALL_SECONDS:
                raise deadline_exceeded("the request ran out of time; try again")
        try:
            return await method(request, metadata=call_metadata(token) + extra, timeout=budget)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def call_as_edge(
        self,
        method: Callable[..., Awaitable[Resp]],
        request: Any,
        *,
        timeout: float | None = None,
    ) -> Resp:
        """Call with the edge's own service identity (for anonymous visitors)."""
        return await self.call(
            method, request, token=await self.service_token.token(), timeout=timeout
        )
