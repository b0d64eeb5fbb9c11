"""uvicorn's sans-I/O WebSocket protocol, extended for the fan-out through one ASGI scope
extension (scope["extensions"]["scoreboard.frames"] is the protocol itself, a `FrameSocket`).

This is the only module that imports uvicorn's private modules. uvicorn has no public extension
point for what the fan-out needs: `Config(ws=...)` accepts a protocol class, but the ASGI
WebSocket interface offers no raw frame writes, no backpressure flag and no way to release a
connection's ASGI task, and the only scope extension uvicorn sets (websocket.http.response) is
for denial responses. So `FanoutProtocol` subclasses `WebSocketsSansIOProtocol`, overriding and
calling the private members listed in tests/edge/ws/test_ws_protocol_contract.py, which fails
loudly when an upgrade changes them; pyproject.toml pins the uvicorn range this was written for
(`UVICORN_RANGE`).

- Raw frames: server-to-client frames are not masked, so one encoded frame is byte-for-byte valid
  on every connection; the fan-out writes it straight to each transport instead of framing the
  same message again for every socket through the ASGI send path.
- Backpressure as a flag: the transport's high-water mark is the slow-viewer limit, and
  pause_writing/resume_writing keep `paused` current, so a full socket is skipped without a call.
- Parking: once the application has authenticated a viewer and sent it the acknowledgement, it
  hands the connection to a `ParkedHandler` and returns. The ASGI task, its coroutine frames, the
  receive queue, the handshake request and the scope are released; incoming messages are handed
  to the handler synchronously. An idle viewer then costs a protocol object and a transport.
- A peer that stops reading can never be closed politely (the close frame sits behind the data it
  does not read), so closing a stuck connection aborts it; so does a missed heartbeat.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

EXTENSION = "scoreboard.frames"
# The uvicorn releases FanoutProtocol was written and checked against; pyproject.toml pins the
# same range, and the contract test fails when either the pin or the installed version leaves it.
UVICORN_RANGE = ">=0.54.0,<0.55"


class ParkedHandler(Protocol):
    def on_message(self, data: bytes) -> None: ...

    def on_close(self) -> None: ...


class FrameSocket(Protocol):
    """What the application sees of a connection (also what the fan-out writes to)."""

    def write_frame(self, frame: bytes) -> bool: ...

    def close(self, code: int, reason: str) -> None: ...

    def park(
        self, handler: ParkedHandler, high_water: int, send_buffer: int | None = None
    ) -> None: ...


class _Discard(asyncio.Queue[Any]):
    """The receive queue of every parked connection: nobody reads it any more."""

    def put_nowait(self, item: Any) -> None:
        return None


class _Writable(asyncio.Event):
    """The writable flag of every parked connection: nobody sends through ASGI any more."""

    def clear(self) -> None:
        return None


_DISCARD = _Discard()
_WRITABLE = _Writable()
_WRITABLE.set()


class FanoutProtocol(WebSocketsSansIOProtocol):
    parked: ParkedHandler | None = None
    paused = False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake itself was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = self

    # ---- backpressure

    def pause_writing(self) -> None:
        self.paused = True
        self.writable.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self.writable.set()

    # ---- the FrameSocket extension

    def write_frame(self, frame: bytes) -> bool:
        """Write one encoded frame; False when the socket is full or closing."""
        if self.paused or self.close_sent or self.transport.is_closing():
            return False
        self.transport.write(frame)
        return True

    def park(self, handler: ParkedHandler, high_water: int, send_buffer: int | None = None) -> None:
        self.parked = handler
        self.transport.set_write_buffer_limits(high=high_water)
        if send_buffer:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.queue = _DISCARD
        self.writable = _WRITABLE
        # The websockets parser keeps the handshake request alive in its generator frame; its
        # headers are the bulk of it.
        self.request.headers.clear()
        for name in ("scope", "request", "response"):
            self.__dict__.pop(name, None)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and wait for the peer's (aborting after close_timeout); a peer that
        does not read is aborted at once."""
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.paused:
            self.transport.abort()
            return
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    # ---- parked connections bypass the ASGI receive queue

    def send_receive_event_to_app(self) -> None:
        handler = self.parked
        if handler is None:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if not self.close_sent:
            handler.on_message(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        handler = self.parked
        if handler is not None:
            self.parked = None
            handler.on_close()

    async def run_asgi(self) -> None:
        # uvicorn's, except that a parked connection stays open when the application returns.
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.parked is None and self.close_timer is None:
            self.transport.close()

    # ---- a stuck peer is aborted rather than waited for

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if self.transport.get_write_buffer_size():
            self.transport.abort()

    def shutdown(self) -> None:
        stuck = self.paused
        super().shutdown()
        if stuck:
            self.transport.abort()
