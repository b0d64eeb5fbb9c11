"""WebSocket viewers that behave like browsers through a fault: each keeps the last top 10 it
was sent, and reconnects (after half a second) whenever its connection ends, as the UI does.
They run in a process of their own (spawned, so no fork of this process's gRPC threads), and
the suite asks them for their state over a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

# (userId, score) of each entry of a top 10, in order.
Board = list[tuple[str, int]]


@dataclass
class ViewerState:
    board: Board | None = None
    sequence: int = -1
    connected: bool = False
    connects: int = 0
    backwards: int = 0


@dataclass
class _Viewer:
    url: str
    state: ViewerState = field(default_factory=ViewerState)

    async def run(self) -> None:
        import orjson
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        state = self.state
        while True:
            try:
                async with connect(self.url, open_timeout=5, ping_interval=None) as socket:
                    state.connected = True
                    state.connects += 1
                    state.sequence = -1  # a new connection starts a new sequence
                    async for raw in socket:
                        message = orjson.loads(raw)
                        if message.get("type") != "LEADERBOARD_UPDATE":
                            continue
                        data = message["data"]
                        if data["sequence"] < state.sequence:
                            state.backwards += 1
                        state.sequence = data["sequence"]
                        state.board = [(e["userId"], int(e["score"])) for e in data["top10"]]
            except (OSError, TimeoutError, WebSocketException):
                pass
            state.connected = False
            await asyncio.sleep(0.5)


async def _serve(url: str, count: int, pipe: Connection) -> None:
    viewers = [_Viewer(url) for _ in range(count)]
    tasks = [asyncio.create_task(v.run()) for v in viewers]
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            break
        pipe.send([v.state for v in viewers])
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    pipe.send("stopped")


def _main(url: str, count: int, pipe: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(url, count, pipe))


class Viewers:
    """`count` reconnecting viewers of `url` in a child process."""

    def __init__(self, url: str, count: int) -> None:
        self.count = count
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process: Any = context.Process(target=_main, args=(url, count, child), daemon=True)
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._process.start()

    async def states(self) -> list[ViewerState]:
        async with self._lock:  # one question on the pipe at a time
            self._pipe.send("state")
            states: list[ViewerState] = await self._answer(30)
            return states

    async def stop(self) -> None:
        if self._process.pid is None:
            return  # never started
        async with self._lock:
            self._pipe.send("stop")
            with contextlib.suppress(EOFError, TimeoutError):
                await self._answer(10)
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()

    async def _answer(self, timeout: float) -> Any:
        """The child's answer, waited for on a thread that never outlives `timeout` (a thread
        blocked in recv() would keep the event loop from closing)."""
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self._pipe.poll, timeout):
            raise TimeoutError("the viewers' process did not answer")
        return self._pipe.recv()
