"""Shutdown never hangs on a background task (the relay, the purge, a consumer) that swallows its
cancellation, as Python 3.11's wait_for can when a result and the cancel arrive together."""

from __future__ import annotations

import asyncio

import pytest

from common.lifecycle import cancel_and_wait


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # the bug: carry on as if nothing happened
        await asyncio.Event().wait()

    async def polite() -> None:
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(polite())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(*tasks, patience=0.05), 10)
    assert swallowed.is_set()
    assert all(task.cancelled() for task in tasks)
    assert any("survived its cancellation" in r.getMessage() for r in caplog.records)


async def test_a_task_error_is_raised_after_every_task_ended() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    async def waiting() -> None:
        await asyncio.Event().wait()

    broken, other = asyncio.create_task(failing()), asyncio.create_task(waiting())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(broken, other)
    assert other.cancelled()
