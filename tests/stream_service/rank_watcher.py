"""A WatchRank gRPC stream of a test: it records every RankUpdate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc

from common.grpc_client import call_metadata
from scoreboard.stream.v1 import stream_service_pb2 as pb
from scoreboard.stream.v1 import stream_service_pb2_grpc


class RankWatcher:
    def __init__(self, address: str, token: str, *, user_id: str = "", board: str = "") -> None:
        self.channel = grpc.aio.insecure_channel(address)
        stub = stream_service_pb2_grpc.StreamServiceStub(self.channel)
        self.call = stub.WatchRank(
            pb.WatchRankRequest(board_id=board, user_id=user_id), metadata=call_metadata(token)
        )
        self.updates: list[pb.RankUpdate] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = asyncio.Event()
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                self.updates.append(reply.update)
                self._new.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._new.set()

    async def wait(
        self, predicate: Callable[[pb.RankUpdate], bool], timeout: float = 15.0
    ) -> pb.RankUpdate:
        """The first update (from the start) that matches."""
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for update in self.updates[seen:]:
                        if predicate(update):
                            return update
                    seen = len(self.updates)
                    if self.ended.is_set():
                        raise AssertionError(f"stream ended: {self.error}")
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"no matching update; got {self.updates[-5:]}") from None

    async def refused(self) -> grpc.StatusCode:
        await asyncio.wait_for(self.ended.wait(), 10)
        assert self.error is not None
        return self.error.code()

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.channel.close()
