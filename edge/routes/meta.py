"""Health, metrics, keys, the OpenAPI document and WebSocket tickets."""

from __future__ import annotations

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from common.errors import RETRY_AFTER_SECONDS, unavailable
from edge.api import ApiRoute
from edge.limits import enforce
from edge.responses import JSON, ok
from edge.schemas import Envelope, WsTicket
from edge.state import edge_state, require_principal
from edge.ws import issue_ticket

JWKS_CACHE_SECONDS = 60.0


async def healthz(request: Request) -> Response:
    state = edge_state(request)
    body = {
        "status": "shutting_down" if state.shutting_down else "ok",
        "liveStream": state.live.connected.is_set(),
        "viewers": len(state.fanout),
    }
    if state.shutting_down:
        # Not ready while draining: a load balancer or client retries (another replica, or this
        # one restarted) after Retry-After, like every other 503.
        return JSON(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return JSON(body)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def jwks(request: Request) -> Response:
    """The public keys the edge itself verifies with (from the JWKS file or URL it is given), so
    this works without auth_service too (external issuer)."""
    document = edge_state(request).verifier.keys.document()
    return JSON(
        document,
        headers={"Cache-Control": f"public, max-age={int(JWKS_CACHE_SECONDS)}"},
        media_type="application/jwk-set+json",
    )


async def ws_ticket(request: Request) -> Response:
    principal = await require_principal(request)
    state = edge_state(request)
    await enforce(state, "ws-ticket", principal.subject, state.settings.ws_tickets_per_minute)
    try:
        ticket = await issue_ticket(state, principal)
    except (OSError, aioredis.RedisError) as exc:
        raise unavailable("tickets cannot be issued right now; try again shortly") from exc
    return ok(
        {"ticket": ticket, "expiresIn": state.settings.websocket.ticket_seconds},
        headers={"Cache-Control": "no-store"},
    )


async def openapi(request: Request) -> Response:
    return JSON(request.app.state.openapi)


async def docs(request: Request) -> Response:
    return HTMLResponse(_DOCS)


_DOCS = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Scoreboard API</title><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/docs.css"></head><body><main id="docs">
<h1>Scoreboard API</h1><p>Loading <a href="/openapi.json">/openapi.json</a>…</p></main>
<script src="/static/docs.js"></script></body></html>"""

ROUTES = [
    ApiRoute(
        "POST",
        "/api/ws-ticket",
        ws_ticket,
        "A single-use ticket to open /ws",
        "live",
        auth="required",
        response=Envelope[WsTicket],
        errors=(401, 429),
        description="Open /ws?ticket=... within the ticket's lifetime, so a long-lived token "
        "never appears in a URL.",
    ),
]
