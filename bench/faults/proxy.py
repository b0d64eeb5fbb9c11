"""A tiny TCP proxy on 127.0.0.1 for fault tests and the fault suite: forwards to a target,
optionally with a delay, or black-holes the link (connections stay open, nothing gets through
either way, as with a partitioned network where no RST ever comes).

The delay is latency, not a bandwidth cap: each chunk read is written `delay_seconds` after it
arrived, while the next chunks are already being read.

`TcpProxy` runs on the caller's event loop (tests); `ProxyThread` runs one on an event loop of
its own in a background thread, so the link's timing does not depend on how busy the caller's
loop is (the fault suite drives load from its loop)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

_CHUNK = 65536


class ProxyServer:
    """The listening side of a proxy on 127.0.0.1: each accepted connection is handled by
    `_handle` in a task of its own; `close` cuts what `_cut_all` cuts, cancels those tasks and
    stops listening. (tests/support/pg_proxy.py builds on it too.)"""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._cut_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _cut_all(self) -> None:
        """Cut the open links before their tasks are cancelled (none by default)."""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class TcpProxy(ProxyServer):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.delay_seconds = 0.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def forward(self) -> None:
        """Pass bytes again (what was held while black-holed goes through first)."""
        self._flowing.set()

    def black_hole(self) -> None:
        """Stop passing bytes, in both directions, on open and new connections."""
        self._flowing.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        # (due time, bytes); None ends the writer once everything before it is written.
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                queue.put_nowait((loop.time() + self.delay_seconds, data))
            queue.put_nowait(None)
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender
            with contextlib.suppress(OSError):
                writer.close()

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, data = item
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()


@asynccontextmanager
async def tcp_proxy(target_host: str, target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


class ProxyThread:
    """A TcpProxy on its own event loop in a daemon thread; the controls are thread-safe."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._proxy = TcpProxy(target_host, target_port)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self._proxy.url

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._proxy.start(), self._loop).result(10)

    def set_delay(self, seconds: float) -> None:
        self._call(lambda: setattr(self._proxy, "delay_seconds", seconds))

    def black_hole(self) -> None:
        self._call(self._proxy.black_hole)

    def forward(self) -> None:
        self._call(self._proxy.forward)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, action: Callable[[], None]) -> None:
        self._loop.call_soon_threadsafe(action)
