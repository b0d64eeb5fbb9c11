"""Pure-ASGI middleware: request id and access log, body size limit, security headers, CORS,
and 503 + Retry-After for a Redis out of its time budget."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import Histogram
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import RETRY_AFTER_SECONDS
from common.logs import REQUEST_ID_HEADER, Throttle, new_request_id, request_id_var
from edge.upstream import request_started_var

log = logging.getLogger("scoreboard.edge.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

HTTP_LATENCY = Histogram(
    "scoreboard_http_request_seconds",
    "HTTP request latency by route and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.08, 0.1, 0.25, 0.5, 1, 2.5),
)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (
        b"content-security-policy",
        b"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        b"style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


# Only over HTTPS (RFC 6797 7.2); behind a TLS-terminating ingress the scheme comes from
# X-Forwarded-Proto when SCOREBOARD_TRUST_FORWARDED is on.
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContext:
    """Request id (taken from X-Request-ID or made), access log without query strings (they can
    carry tokens), latency metrics, security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else new_request_id()
        request_id_var.set(request_id)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_started_var.set(time.monotonic())
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                if scope.get("scheme") == "https":
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            HTTP_LATENCY.labels(scope["method"], route, str(status)).observe(elapsed)
            if status >= 500 or log.isEnabledFor(logging.DEBUG):
                log.log(
                    logging.WARNING if status >= 500 else logging.DEBUG,
                    "http request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    },
                )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


class BodyLimit:
    """Refuse bodies over the limit with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0
        tracking = _StartTracking(send)

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, tracking)
        except _TooLarge:
            if not tracking.started:
                await _too_large(send, self.max_bytes)


class _StartTracking:
    """The app's `send`, noting whether the response has started (then it is too late to
    answer with an error)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    await _send_error(send, 413, f"the body is larger than {limit} bytes", "PAYLOAD_TOO_LARGE")


class RedisUnavailable:
    """A Redis call of the edge's own (a route that has no policy of its own for it) that failed
    or ran out of its time budget answers 503 SERVICE_UNAVAILABLE with Retry-After, in the
    error envelope, instead of a 500. Routes with a policy (the completion limit falls back per
    replica; tickets) handle it first."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._warnings = Throttle(10.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracking = _StartTracking(send)

        try:
            await self.app(scope, receive, tracking)
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            if tracking.started:
                raise
            if self._warnings.due():
                log.warning("redis unavailable: %r", exc, extra={"path": scope["path"]})
            await _unavailable(send)


async def _unavailable(send: Send) -> None:
    await _send_error(
        send,
        503,
        "A service is temporarily unavailable. Try again shortly.",
        "UNAVAILABLE",
        extra_headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
    )


async def _send_error(
    send: Send,
    status: int,
    error: str,
    code: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answers a raw ASGI request with the error envelope."""
    body: Any = orjson.dumps({"success": False, "error": error, "code": code})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Cors(CORSMiddleware):
    """Starlette's CORS allow-list, with a refused preflight in the error envelope (403: the
    origin, method or headers are not allowed) instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode("utf-8", "replace")
        headers = {
            k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")
        }
        return Response(
            orjson.dumps({"success": False, "error": reason, "code": "CORS_REFUSED"}),
            status_code=403,
            headers={**headers, "Vary": "Origin"},
            media_type="application/json",
        )
