"""WatchTop10 streams are capped per principal (per replica): past the cap a new stream is
refused with RESOURCE_EXHAUSTED and an ErrorInfo, closing one frees its slot, another principal
has its own; a service identity (every edge process holds one stream with the edge's) gets the
separate, higher cap."""

from __future__ import annotations

import asyncio

import grpc
from grpc_status import rpc_status

from common.errors import from_rpc_error
from tests.conftest import StackFactory
from tests.stream_service.watcher import Watcher
from tests.support.tokens import game_token, register
from tests.support.top10 import entries, publish, settled

PER_PRINCIPAL, PER_SERVICE = 2, 3


async def _watching(address: str, token: str, sequence: int) -> Watcher:
    watcher = Watcher(address, token)
    await watcher.wait_for(sequence)
    return watcher


async def _refused(address: str, token: str) -> grpc.aio.AioRpcError:
    watcher = Watcher(address, token)
    try:
        await asyncio.wait_for(watcher.ended.wait(), 10)
        assert watcher.error is not None, watcher.sequences
        assert watcher.sequences == []
        return watcher.error
    finally:
        await watcher.close()


async def test_concurrent_streams_are_capped_per_principal(stack_factory: StackFactory) -> None:
    stream = {"watch_top10_per_principal": PER_PRINCIPAL, "watch_top10_per_service": PER_SERVICE}
    async with stack_factory(with_edge=False, stream=stream) as stack:
        await settled(stack)
        address = stack.address("stream")
        seq = await publish(stack.redis, stack, entries(30, 20))
        _, user = await register(stack)
        _, other = await register(stack)
        service = await game_token(stack)
        open_ = [await _watching(address, user, seq) for _ in range(PER_PRINCIPAL)]
        try:
            error = await _refused(address, user)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            refusal = from_rpc_error(error)
            assert refusal.reason == "STREAM_LIMIT"
            assert refusal.metadata["limit"] == str(PER_PRINCIPAL)
            status = rpc_status.from_call(error)
            assert status is not None and status.details  # the ErrorInfo travels

            # Another user is not affected; a closed stream frees its slot.
            open_.append(await _watching(address, other, seq))
            await open_.pop(0).close()
            open_.append(await _wait_for_slot(address, user, seq))

            # A service identity has the higher cap.
            open_ += [await _watching(address, service, seq) for _ in range(PER_SERVICE)]
            assert (await _refused(address, service)).code() == (grpc.StatusCode.RESOURCE_EXHAUSTED)
            # The streams that are open still get every change.
            seq = await publish(stack.redis, stack, entries(31, 20))
            for watcher in open_:
                await watcher.wait_for(seq)
        finally:
            for watcher in open_:
                await watcher.close()


async def _wait_for_slot(address: str, token: str, sequence: int) -> Watcher:
    """The server learns of a cancelled stream a moment after the client closed it."""
    for _ in range(50):
        watcher = Watcher(address, token)
        try:
            await watcher.wait_for(sequence, timeout=5)
            return watcher
        except AssertionError:
            await watcher.close()
            await asyncio.sleep(0.1)
    raise AssertionError("the closed stream's slot was never freed")
