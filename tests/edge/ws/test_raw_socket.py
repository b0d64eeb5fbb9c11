"""The raw WebSocket client of these tests leaves nothing open when its handshake is refused: an
unclosed StreamWriter is reported by the garbage collector inside whichever later test happens
to run when it collects, far from the test that left it."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from tests.edge.ws.raw_socket import RawSocket


async def test_a_refused_handshake_closes_the_connection() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(AssertionError, match="403") as refused:
            await RawSocket.open(f"ws://127.0.0.1:{port}/ws")
    finally:
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0)  # let the transport finish closing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del refused  # its traceback holds the frame of open(), and so the writer
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
