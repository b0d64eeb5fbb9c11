"""uvicorn's sans-I/O WebSocket protocol, plus one ASGI scope extension for the fan-out.

Server-to-client frames are not masked, so one encoded frame is byte-for-byte valid on every
connection. The extension lets the fan-out write that frame straight to each transport (about a
microsecond per viewer) and see each transport's unsent bytes, instead of framing the same
message again for every socket through the ASGI send path.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

EXTENSION = "scoreboard.frames"


class RawFrames:
    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> bool:
        protocol = self._protocol
        transport = protocol.transport
        if protocol.close_sent or not protocol.handshake_complete or transport.is_closing():
            return False
        transport.write(frame)
        return True

    def buffered(self) -> int:
        return self._protocol.transport.get_write_buffer_size()


class FanoutProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = RawFrames(self)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload
