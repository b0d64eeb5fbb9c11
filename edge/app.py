"""create_app: the edge's Starlette application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from common.auth.verifier import open_verifier
from common.errors import ServiceError
from common.lifecycle import cancel_and_wait
from common.ratelimit import SlidingWindowLimiter
from common.redis_conn import open_redis
from common.redis_keys import Keys
from edge.api import ApiRoute
from edge.bodies import HttpError
from edge.config import Settings
from edge.fanout import FanOut
from edge.live import LiveBoard
from edge.live_boards import BoardCatalog, LiveBoards
from edge.middleware import BodyLimit, Cors, RedisUnavailable, RequestContext
from edge.openapi import build_openapi
from edge.responses import error, from_service_error
from edge.routes import actions, auth, boards, leaderboard, meta
from edge.state import EdgeState
from edge.upstream import Upstream
from edge.ws import CLOSE_RESTART, websocket_endpoint

log = logging.getLogger("scoreboard.edge")
STATIC = Path(__file__).parent / "static"
VERSION = "0.1.0"
API_ROUTES: list[ApiRoute] = [
    *auth.ROUTES,
    *actions.ROUTES,
    *leaderboard.ROUTES,
    *boards.ROUTES,
    *meta.ROUTES,
]


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return from_service_error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error(exc.status, exc.message, exc.code, exc.headers)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    return error(
        exc.status_code,
        str(exc.detail),
        codes.get(exc.status_code, "HTTP_ERROR"),
        dict(exc.headers or {}),
    )


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error(500, "Internal error.", "INTERNAL")


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _expiry_sweep(state: EdgeState) -> None:
    while True:
        await asyncio.sleep(1.0)
        state.fanout.expire(time.time())


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keys = Keys(settings.redis.key_prefix)
        redis = open_redis(settings.redis, name="edge", max_connections=256)
        verifier = await open_verifier(settings.verifier, redis, keys)
        upstream = Upstream.connect(
            settings.endpoints, settings.credentials, timeout=settings.upstream_timeout_seconds
        )
        fanout = FanOut(settings.websocket)
        if verifier.revocations is not None:
            # A logout or a ban closes the sockets its tokens opened, at once.
            verifier.revocations.subscribe(fanout.revoke)
        live = LiveBoard(upstream, lambda board: fanout.publish(board.frame))
        live_boards = LiveBoards(
            upstream, fanout, live, idle_seconds=settings.websocket.board_idle_seconds
        )
        state = EdgeState(
            settings=settings,
            redis=redis,
            keys=keys,
            verifier=verifier,
            upstream=upstream,
            limiter=SlidingWindowLimiter(redis, keys),
            fanout=fanout,
            live=live,
            boards=live_boards,
            catalog=BoardCatalog(upstream),
        )
        app.state.edge = state
        tasks = [
            asyncio.create_task(live.run()),
            asyncio.create_task(live_boards.run()),
            asyncio.create_task(_expiry_sweep(state)),
        ]
        try:
            yield
        finally:
            state.shutting_down = True
            fanout.close_all(CLOSE_RESTART, "server restarting")
            await cancel_and_wait(*tasks)
            await upstream.close()
            await verifier.aclose()
            await redis.aclose()

    routes: list[BaseRoute] = [r.route() for r in API_ROUTES]
    routes += [
        Route("/healthz", meta.healthz),
        Route("/metrics", meta.metrics),
        Route("/.well-known/jwks.json", meta.jwks),
        Route("/openapi.json", meta.openapi),
        Route("/docs", meta.docs),
        WebSocketRoute("/ws", websocket_endpoint),
    ]
    if settings.serve_ui:
        routes += [
            Route("/", _index),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    # Outermost first. CORS sits outside the body limit so a 413 still carries CORS headers.
    middleware = [Middleware(RequestContext)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                Cors,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "idempotency-key", "x-request-id"],
                expose_headers=[
                    "ratelimit",
                    "ratelimit-policy",
                    "retry-after",
                    "etag",
                    "x-request-id",
                ],
                max_age=600,
            )
        )
    middleware.append(Middleware(BodyLimit, max_bytes=settings.max_body_bytes))
    middleware.append(Middleware(RedisUnavailable))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            ServiceError: _service_error,
            HttpError: _http_error,
            HTTPException: _starlette_error,
            500: _internal,
        },
    )
    app.state.openapi = build_openapi(API_ROUTES, version=VERSION)
    return app
