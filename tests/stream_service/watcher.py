"""A WatchTop10 gRPC stream of a test: it records every snapshot, or holds still (slow)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from common.grpc_client import call_metadata
from scoreboard.stream.v1 import stream_service_pb2, stream_service_pb2_grpc


class Watcher:
    """A WatchTop10 gRPC stream that records (or, paused, does not read) its snapshots."""

    def __init__(
        self,
        address: str,
        token: str,
        *,
        reading: bool = True,
        board: str = "",
        period: int = 0,
    ) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        stub = stream_service_pb2_grpc.StreamServiceStub(self.channel)
        self.call = stub.WatchTop10(
            stream_service_pb2.WatchTop10Request(board_id=board, period=period),
            metadata=call_metadata(token),
        )
        self.sequences: list[int] = []
        self.snapshots: list[Any] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = asyncio.Event()
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read()) if reading else None

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                self.sequences.append(reply.snapshot.sequence)
                self.snapshots.append(reply.snapshot)
                self._new.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._new.set()

    async def wait_until(self, check: Any, timeout: float = 20.0) -> Any:
        """The first snapshot (from the newest back to the last one seen) that passes."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = next((s for s in reversed(self.snapshots) if check(s)), None)
                    if found is not None:
                        return found
                    if self.ended.is_set():
                        raise AssertionError(f"stream ended: {self.error}")
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"no such snapshot; got {self.snapshots[-3:]}") from None

    def start_reading(self) -> None:
        assert self._task is None
        self._task = asyncio.create_task(self._read())

    async def wait_for(self, sequence: int, timeout: float = 15.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not self.sequences or self.sequences[-1] < sequence:
                    if self.ended.is_set():
                        raise AssertionError(f"stream ended: {self.error}")
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"no sequence >= {sequence}; got {self.sequences[-5:]}") from None

    async def close(self) -> None:
        self.call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        await self.channel.close()
