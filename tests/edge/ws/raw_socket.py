"""A raw WebSocket client that misbehaves on purpose: it never reads, or never answers pings."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket


class RawSocket:
    """A WebSocket client that speaks only as much of RFC 6455 as a test needs: it completes
    the handshake and then reads only when told (or never), and never answers pings unless
    asked to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, ws_url: str, *, receive_buffer: int | None = None) -> RawSocket:
        host, port_path = ws_url.removeprefix("ws://").split(":", 1)
        port, _, rest = port_path.partition("/")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        try:
            writer.write(
                (
                    f"GET /{rest} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            status = await reader.readuntil(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 101"), status
        except BaseException:
            # A refused or broken handshake closes the connection here: an unclosed socket or
            # writer would be reported by the garbage collector in whichever later test it ran.
            writer.close()
            raise
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload)."""
        head = await self.reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def frames_until_closed(self) -> list[tuple[int, bytes]]:
        """Read everything until the server closes the connection (or aborts it)."""
        frames = []
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                frames.append(await self.frame())
        return frames

    def send(self, opcode: int, payload: bytes) -> None:
        mask = secrets.token_bytes(4)
        length = len(payload)
        if length < 126:
            header = bytes((0x80 | opcode, 0x80 | length))
        elif length < 1 << 16:
            header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    def close(self) -> None:
        self.writer.close()


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    for opcode, payload in frames:
        if opcode == 0x8 and len(payload) >= 2:
            return int.from_bytes(payload[:2], "big")
    return None
