"""The WebSocket endpoint /ws: authenticated at the handshake, then fed by the fan-out.

Authentication, in order: ?ticket=<single-use ticket from POST /api/ws-ticket>, a bearer token
offered as the subprotocol "bearer.<token>" next to "scoreboard.v1", or ?token=<JWT> (the
specification's form). Refusals send an ERROR message, then close with a 44xx code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from common.errors import Reason, ServiceError, unauthenticated
from common.principal import Principal
from edge.fanout import Frame, Viewer
from edge.live import iso
from edge.state import EdgeState, edge_state
from edge.ws_protocol import EXTENSION, RawFrames

log = logging.getLogger("scoreboard.edge.ws")

SUBPROTOCOL = "scoreboard.v1"
BEARER_PREFIX = "bearer."
CLOSE_UNAUTHENTICATED = 4401
CLOSE_ORIGIN = 4403
CLOSE_LIMIT = 4429
CLOSE_BAD_MESSAGE = 4400
CLOSE_RESTART = 1012

_closing: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class Identity:
    user_id: str | None
    expires_at: float | None


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser: origin checks protect browsers only
    if origin in allowed or "*" in allowed:
        return True
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def issue_ticket(state: EdgeState, principal: Principal) -> str:
    ticket = secrets.token_urlsafe(32)
    value = orjson.dumps(
        {
            "sub": principal.user_id or principal.subject,
            "exp": principal.expires_at,
            "user": principal.user_id,
        }
    )
    await state.redis.set(
        state.keys.ws_ticket(_ticket_key(ticket)), value, ex=state.settings.websocket.ticket_seconds
    )
    return ticket


def _ticket_key(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def _identify(websocket: WebSocket, state: EdgeState) -> tuple[Identity, str | None]:
    """Who connects, and the subprotocol to accept."""
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in websocket.scope.get("subprotocols", []) else None
    ticket = websocket.query_params.get("ticket")
    if ticket:
        raw = await state.redis.getdel(state.keys.ws_ticket(_ticket_key(ticket[:128])))
        if raw is None:
            raise unauthenticated(Reason.TOKEN_INVALID, "the ticket is invalid, expired or used")
        data = orjson.loads(raw)
        return Identity(data.get("user"), float(data["exp"])), subprotocol
    token = next(
        (
            p[len(BEARER_PREFIX) :]
            for p in websocket.scope.get("subprotocols", [])
            if p.startswith(BEARER_PREFIX)
        ),
        None,
    ) or websocket.query_params.get("token")
    if token:
        principal = await state.verifier.verify(token)
        return Identity(principal.user_id, principal.expires_at), subprotocol
    if state.settings.websocket.allow_anonymous:
        return Identity(None, None), subprotocol
    raise unauthenticated(Reason.UNAUTHENTICATED, "a token or ticket is required")


async def _refuse(
    websocket: WebSocket, code: int, reason: str, message: str, subprotocol: str | None = None
) -> None:
    await websocket.accept(subprotocol=subprotocol)
    await websocket.send_text(
        orjson.dumps({"type": "ERROR", "data": {"code": reason, "message": message}}).decode()
    )
    await websocket.close(code, reason)


def _closer(websocket: WebSocket) -> Callable[[int, str], None]:
    def close(code: int, reason: str) -> None:
        async def run() -> None:
            if websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, OSError):
                    await websocket.close(code, reason)

        task = asyncio.get_running_loop().create_task(run())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    return close


class _QueuedSender:
    """Fallback when the server gives no raw frame access: a one-slot mailbox per viewer, drained
    by its own task (the newest snapshot replaces an unsent one)."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._slot: Frame | None = None
        self._wake = asyncio.Event()
        self._sending = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def send(self, frame: Frame) -> bool:
        self._slot = frame
        self._wake.set()
        return True

    def buffered(self) -> int:
        return self._sending

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            frame, self._slot = self._slot, None
            if frame is not None:
                self._sending = len(frame.text)
                try:
                    await self._websocket.send_text(frame.text)
                except (RuntimeError, OSError, WebSocketDisconnect):
                    return
                self._sending = 0


async def websocket_endpoint(websocket: WebSocket) -> None:
    state = edge_state(websocket)
    settings = state.settings.websocket
    if state.shutting_down:
        await _refuse(websocket, CLOSE_RESTART, "SHUTTING_DOWN", "the server is restarting")
        return
    if not origin_allowed(websocket, settings.origins):
        await _refuse(websocket, CLOSE_ORIGIN, "ORIGIN_NOT_ALLOWED", "this origin is not allowed")
        return
    try:
        identity, subprotocol = await _identify(websocket, state)
    except ServiceError as exc:
        await _refuse(websocket, CLOSE_UNAUTHENTICATED, exc.reason, exc.message)
        return
    refusal = state.fanout.admit(identity.user_id)
    if refusal is not None:
        await _refuse(websocket, CLOSE_LIMIT, "CONNECTION_LIMIT", refusal, subprotocol)
        return
    await websocket.accept(subprotocol=subprotocol)
    await websocket.send_text(
        orjson.dumps(
            {
                "type": "CONNECTION_ACK",
                "data": {"userId": identity.user_id, "connectedAt": iso_now()},
            }
        ).decode()
    )
    raw: RawFrames | None = websocket.scope.get("extensions", {}).get(EXTENSION)
    queued: _QueuedSender | None = None
    if raw is not None:
        viewer = Viewer(
            user_id=identity.user_id,
            expires_at=identity.expires_at,
            send=lambda frame: raw.write(frame.frame),
            buffered=raw.buffered,
            close=_closer(websocket),
        )
    else:
        queued = _QueuedSender(websocket)
        viewer = Viewer(
            user_id=identity.user_id,
            expires_at=identity.expires_at,
            send=queued.send,
            buffered=queued.buffered,
            close=_closer(websocket),
        )
    state.fanout.add(viewer)
    try:
        await _receive_loop(websocket, settings.messages_per_second)
    finally:
        state.fanout.remove(viewer)
        if queued is not None:
            queued.task.cancel()


def iso_now() -> str:
    return iso(datetime.now(UTC))


async def _receive_loop(websocket: WebSocket, rate: float) -> None:
    """Clients may send {"type": "PING"}; anything else is an error. Too many messages close."""
    allowance = capacity = max(5.0, rate)
    last = time.monotonic()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        now = time.monotonic()
        allowance = min(capacity, allowance + (now - last) * rate)
        last = now
        if allowance < 1:
            await _refuse_open(websocket, CLOSE_LIMIT, "RATE_LIMITED", "too many messages")
            return
        allowance -= 1
        kind = None
        try:
            body = orjson.loads(message.get("text") or message.get("bytes") or b"")
            kind = body.get("type") if isinstance(body, dict) else None
        except orjson.JSONDecodeError:
            pass
        if kind == "PING":
            await websocket.send_text('{"type":"PONG","data":{}}')
        else:
            await websocket.send_text(
                orjson.dumps(
                    {
                        "type": "ERROR",
                        "data": {
                            "code": "UNKNOWN_MESSAGE",
                            "message": "only PING messages are accepted",
                        },
                    }
                ).decode()
            )


async def _refuse_open(websocket: WebSocket, code: int, reason: str, message: str) -> None:
    await websocket.send_text(
        orjson.dumps({"type": "ERROR", "data": {"code": reason, "message": message}}).decode()
    )
    await websocket.close(code, reason)
