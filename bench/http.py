"""A minimal HTTP/1.1 keep-alive client for load generation: a fixed pool of connections, one
request in flight per connection, Content-Length bodies only. An order of magnitude cheaper per
request than a general-purpose client, so the generator leaves the CPU to the stack it measures."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


class HttpPool:
    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._size = size
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._opened = 0

    async def _connection(self) -> _Connection:
        if self._idle.empty() and self._opened < self._size:
            self._opened += 1
            try:
                reader, writer = await asyncio.open_connection(self._host, self._port)
            except OSError:
                self._opened -= 1
                raise
            return _Connection(reader, writer)
        return await self._idle.get()

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        conn = await self._connection()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT"):
            lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        try:
            conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            head = await conn.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            reply_headers: dict[str, str] = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    reply_headers[name.strip().lower()] = value.strip()
            length = int(reply_headers.get("content-length", "0"))
            data = await conn.reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.writer.close()
            self._opened -= 1
            raise
        if reply_headers.get("connection", "").lower() == "close":
            conn.writer.close()
            self._opened -= 1
        else:
            self._idle.put_nowait(conn)
        return Reply(status, reply_headers, data)

    async def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            conn.writer.close()
