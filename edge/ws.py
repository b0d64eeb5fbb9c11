"""The WebSocket endpoint /ws: authenticated at the handshake, then fed by the fan-out.

Authentication, in order: ?ticket=<single-use ticket from POST /api/ws-ticket>, a bearer token
offered as the subprotocol "bearer.<token>" next to "scoreboard.v1", or ?token=<JWT> (the
specification's form); anonymous viewers only when configured. Refusals send an ERROR message,
then close with a 44xx code (1012 while the server shuts down, 1013 when Redis cannot check a
ticket or token right now: try again). A connection whose token is
revoked later (logout, ban) is closed at once: ERROR TOKEN_REVOKED, then 4401.

A viewer watches one board (issue 17): the default one, or ?board=ID at the handshake (an
unknown board is refused: ERROR NOT_FOUND, close 4404). After the CONNECTION_ACK the connection is
parked (see edge.ws_protocol): the fan-out writes its board's snapshots to it, and the few
messages a client may send are answered synchronously: PING; SUBSCRIBE {"board": id}, which
moves the socket to another board (SUBSCRIBED, then that board's newest LEADERBOARD_UPDATE; an
unknown board gets ERROR NOT_FOUND and changes nothing), the edge opening its upstream stream of
that board when it has none; and SUBSCRIBE_RANK {"board": id (optional)} / UNSUBSCRIBE_RANK from
a signed-in user, which start and stop RANK_UPDATE messages for that user's own rank on this
socket (edge.live.RankFeeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import grpc
import orjson
import redis.asyncio as aioredis
from starlette.websockets import WebSocket, WebSocketDisconnect

from common.auth.principal import Principal
from common.config import DEFAULT_BOARD
from common.errors import Reason, ServiceError, unauthenticated, unavailable
from edge import ws_messages
from edge.fanout import FanOut, Grant, Viewer
from edge.live import RankFeeds
from edge.responses import iso
from edge.state import EdgeState, edge_state
from edge.ws_protocol import EXTENSION, FrameSocket

log = logging.getLogger("scoreboard.edge.ws")

SUBPROTOCOL = "scoreboard.v1"
BEARER_PREFIX = "bearer."
CLOSE_UNAUTHENTICATED = 4401
CLOSE_ORIGIN = 4403
CLOSE_NO_BOARD = 4404
CLOSE_LIMIT = 4429
CLOSE_RESTART = 1012
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
MAX_TICKET_CHARS = 128
_BOARD_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Identity:
    user_id: str | None
    # What the per-user limit counts: the user, or the service account; None when anonymous.
    key: str | None
    expires_at: float | None
    # What a revocation of the admitting token would name (None when anonymous).
    grant: Grant | None = None


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
            "sub": principal.subject,
            "exp": principal.expires_at,
            "user": principal.user_id,
            # Checked again when the ticket is used: a logout in between revokes it too.
            "jti": principal.token_id,
            "sid": principal.session,
            "iat": principal.issued_at,
        }
    )
    await state.redis.set(
        state.keys.ws_ticket(_ticket_key(ticket)), value, ex=state.settings.websocket.ticket_seconds
    )
    return ticket


def _ticket_key(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _bearer(websocket: WebSocket) -> str | None:
    for offered in websocket.scope.get("subprotocols", []):
        if offered.startswith(BEARER_PREFIX):
            return str(offered[len(BEARER_PREFIX) :])
    return None


async def _identify(websocket: WebSocket, state: EdgeState) -> Identity:
    ticket = websocket.query_params.get("ticket")
    if ticket is not None:
        raw = None
        if 0 < len(ticket) <= MAX_TICKET_CHARS:
            try:
                raw = await state.redis.getdel(state.keys.ws_ticket(_ticket_key(ticket)))
            except (OSError, aioredis.RedisError) as exc:
                # Out of its time budget or unreachable: the ticket may be spent or not, so the
                # client gets a fresh one and tries again (CLOSE_TRY_AGAIN).
                raise unavailable("tickets cannot be checked right now; try again shortly") from exc
        if raw is None:
            raise unauthenticated(Reason.TOKEN_INVALID, "the ticket is invalid, expired or used")
        data = orjson.loads(raw)
        grant = Grant(
            data.get("jti", ""), data.get("sid", ""), data["sub"], float(data.get("iat", 0.0))
        )
        await state.verifier.ensure_not_revoked(
            grant.token_id, grant.session, grant.subject, grant.issued_at
        )
        identity = Identity(data.get("user"), data["sub"], float(data["exp"]), grant)
    else:
        token = _bearer(websocket) or websocket.query_params.get("token")
        if token:
            principal = await state.verifier.verify(token)
            identity = Identity(
                principal.user_id,
                principal.subject,
                principal.expires_at,
                Grant(
                    principal.token_id, principal.session, principal.subject, principal.issued_at
                ),
            )
        elif state.settings.websocket.allow_anonymous:
            return Identity(None, None, None)
        else:
            raise unauthenticated(Reason.UNAUTHENTICATED, "a token or ticket is required")
    # The verifier allows a little clock leeway; a live connection is closed at expiry, so one
    # that would be closed at once is refused instead.
    if identity.expires_at is not None and identity.expires_at <= time.time():
        raise unauthenticated(Reason.TOKEN_EXPIRED, "the token has expired")
    return identity


async def _refuse(
    websocket: WebSocket, code: int, reason: str, message: str, subprotocol: str | None
) -> None:
    # A browser that offered subprotocols fails a handshake that selects none, and would never
    # see the ERROR: accept with ours before refusing.
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await websocket.accept(subprotocol=subprotocol)
        await websocket.send_text(ws_messages.error(reason, message).decode())
        await websocket.close(code, reason)


def rank_feeds(websocket: WebSocket, state: EdgeState) -> RankFeeds:
    """This process's WatchRank streams, made on first use and ended with the fan-out."""
    feeds: RankFeeds | None = getattr(websocket.app.state, "rank_feeds", None)
    if feeds is None or feeds.upstream is not state.upstream:
        feeds = RankFeeds(state.upstream)
        websocket.app.state.rank_feeds = feeds
        state.fanout.on_close_all.append(feeds.close)
    return feeds


class WsViewer(Viewer):
    """A parked /ws connection: answers PING, moves to another board on SUBSCRIBE, subscribes a
    signed-in user to its own rank, refuses anything else, limits the message rate (a token
    bucket), and leaves the fan-out (and its rank feed) when the connection is lost."""

    __slots__ = ("_allowance", "_checked", "_fanout", "_ranks", "_state", "_switch", "user_id")

    def __init__(
        self,
        socket: FrameSocket,
        fanout: FanOut,
        *,
        key: str | None,
        expires_at: float | None,
        grant: Grant | None = None,
        user_id: str | None = None,
        ranks: RankFeeds | None = None,
        board: str = DEFAULT_BOARD,
        state: EdgeState | None = None,
    ) -> None:
        super().__init__(socket, key=key, expires_at=expires_at, grant=grant, board=board)
        self._fanout = fanout
        self._state = state
        self._switch: asyncio.Task[None] | None = None
        self._allowance = _burst(fanout.settings.messages_per_second)
        self._checked = time.monotonic()
        self.user_id = user_id
        self._ranks = ranks

    def on_message(self, data: bytes) -> None:
        rate = self._fanout.settings.messages_per_second
        now = time.monotonic()
        self._allowance = min(_burst(rate), self._allowance + (now - self._checked) * rate)
        self._checked = now
        if self._allowance < 1:
            self.socket.write_frame(ws_messages.RATE_LIMITED_FRAME)
            self._fanout.remove(self)
            self.socket.close(CLOSE_LIMIT, "RATE_LIMITED")
            return
        self._allowance -= 1
        kind = None
        body: object = None
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(data)
            kind = body.get("type") if isinstance(body, dict) else None
        if kind == "PING":
            self.socket.write_frame(ws_messages.PONG_FRAME)
        elif kind == "SUBSCRIBE" and isinstance(body, dict):
            self._subscribe(body.get("data"))
        elif kind == "SUBSCRIBE_RANK" and isinstance(body, dict):
            self._subscribe_rank(body.get("data"))
        elif kind == "UNSUBSCRIBE_RANK":
            if self._ranks is not None:
                self._ranks.unsubscribe(self)
        else:
            self.socket.write_frame(ws_messages.UNKNOWN_MESSAGE_FRAME)

    def _subscribe(self, data: object) -> None:
        board = data.get("board") if isinstance(data, dict) else None
        if board is None:
            board = DEFAULT_BOARD
        if not isinstance(board, str) or not _BOARD_ID.fullmatch(board) or self._state is None:
            self.socket.write_frame(ws_messages.INVALID_BOARD_FRAME)
            return
        if self._switch is not None:
            self._switch.cancel()  # the newest SUBSCRIBE wins
        self._switch = asyncio.create_task(self._switch_to(board, self._state))

    async def _switch_to(self, board: str, state: EdgeState) -> None:
        try:
            known = await state.catalog.exists(board)
        except ServiceError as exc:
            self.socket.write_frame(
                ws_messages.text_frame(ws_messages.error(exc.reason, exc.message))
            )
            return
        if not known:
            self.socket.write_frame(ws_messages.BOARD_NOT_FOUND_FRAME)
            return
        if self.closed_out():
            return
        state.boards.open(board)
        self.socket.write_frame(ws_messages.text_frame(ws_messages.subscribed(board)))
        self._fanout.move(self, board)

    def closed_out(self) -> bool:
        """True once the fan-out has let this viewer go (closed, revoked, expired)."""
        return not self._fanout.has(self)

    def _subscribe_rank(self, data: object) -> None:
        if self.user_id is None or self._ranks is None:
            self.socket.write_frame(ws_messages.RANK_NEEDS_USER_FRAME)
            return
        board = data.get("board") if isinstance(data, dict) else None
        if board is None:
            board = DEFAULT_BOARD
        if not isinstance(board, str) or not _BOARD_ID.fullmatch(board):
            self.socket.write_frame(ws_messages.INVALID_BOARD_FRAME)
            return
        self._ranks.subscribe(self, self.user_id, board, self.socket.write_frame)

    def on_close(self) -> None:
        if self._switch is not None:
            self._switch.cancel()
        self._fanout.remove(self)
        if self._ranks is not None:
            self._ranks.unsubscribe(self)


def _burst(rate: float) -> float:
    return max(5.0, rate)


async def websocket_endpoint(websocket: WebSocket) -> None:
    state = edge_state(websocket)
    settings = state.settings.websocket
    offered = websocket.scope.get("subprotocols", [])
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
    socket: FrameSocket | None = websocket.scope.get("extensions", {}).get(EXTENSION)
    if socket is None:
        log.error("/ws needs the edge's WebSocket protocol (edge.server); refusing")
        await _refuse(websocket, CLOSE_INTERNAL, "INTERNAL", "not available here", subprotocol)
        return
    if state.shutting_down:
        await _refuse(
            websocket, CLOSE_RESTART, "SHUTTING_DOWN", "the server is restarting", subprotocol
        )
        return
    if not origin_allowed(websocket, settings.origins):
        await _refuse(
            websocket, CLOSE_ORIGIN, "ORIGIN_NOT_ALLOWED", "this origin is not allowed", subprotocol
        )
        return
    try:
        identity = await _identify(websocket, state)
    except ServiceError as exc:
        # UNAVAILABLE (Redis could not answer) is no verdict on the credentials: try again.
        code = CLOSE_TRY_AGAIN if exc.code == grpc.StatusCode.UNAVAILABLE else CLOSE_UNAUTHENTICATED
        await _refuse(websocket, code, exc.reason, exc.message, subprotocol)
        return
    board = websocket.query_params.get("board") or DEFAULT_BOARD
    refused = await _board_refusal(state, board)
    if refused is not None:
        code, reason, text = refused
        await _refuse(websocket, code, reason, text, subprotocol)
        return
    refusal = state.fanout.reserve(identity.key)
    if refusal is not None:
        await _refuse(websocket, CLOSE_LIMIT, "CONNECTION_LIMIT", refusal, subprotocol)
        return
    try:
        await websocket.accept(subprotocol=subprotocol)
        await websocket.send_text(ws_messages.ack(identity.user_id, iso_now()).decode())
    except (WebSocketDisconnect, OSError, RuntimeError):
        state.fanout.release(identity.key)
        return
    viewer = WsViewer(
        socket,
        state.fanout,
        key=identity.key,
        expires_at=identity.expires_at,
        grant=identity.grant,
        user_id=identity.user_id,
        ranks=rank_feeds(websocket, state) if identity.user_id is not None else None,
        board=board,
        state=state,
    )
    state.boards.open(board)
    state.fanout.add(viewer)
    socket.park(viewer, settings.slow_viewer_bytes, settings.send_buffer_bytes)
    if _revoked_meanwhile(state, identity.grant):
        # Revoked after the check at the handshake, before the viewer was indexed.
        state.fanout.close_revoked(viewer)


async def _board_refusal(state: EdgeState, board: str) -> tuple[int, str, str] | None:
    """Why a handshake naming this board is refused (close code, reason, message), or None."""
    if not _BOARD_ID.fullmatch(board):
        return CLOSE_NO_BOARD, Reason.INVALID_ARGUMENT, "board must be a board id"
    try:
        known = await state.catalog.exists(board)
    except ServiceError as exc:
        return CLOSE_TRY_AGAIN, exc.reason, exc.message
    if not known:
        return CLOSE_NO_BOARD, Reason.NOT_FOUND, f"there is no board {board!r}"
    return None


def _revoked_meanwhile(state: EdgeState, grant: Grant | None) -> bool:
    mirror = state.verifier.revocations
    return (
        grant is not None
        and mirror is not None
        and mirror.revoked(grant.token_id, grant.session, grant.subject, grant.issued_at)
    )


def iso_now() -> str:
    return iso(datetime.now(UTC))
