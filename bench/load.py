"""Open-loop load: start calls at a target rate (never waiting for replies to decide when the
next one starts), cap the calls in flight, record each call's latency and outcome. Run in a
separate process so the load generator's own event loop is not the stack's."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    started: int = 0
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    # Calls that could not start on time because max_in_flight calls were pending.
    throttled: int = 0

    @property
    def accepted(self) -> int:
        return self.outcomes.get("ok", 0)


async def run_open_loop(
    call: Callable[[int], Awaitable[str]],
    *,
    rate: float,
    seconds: float,
    max_in_flight: int,
) -> LoadResult:
    """`call(n)` performs request n and returns its outcome ("ok" or a reason)."""
    result = LoadResult()
    slots = asyncio.Semaphore(max_in_flight)
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int, due: float) -> None:
        try:
            outcome = await call(n)
        except Exception as exc:  # a load generator reports failures, it does not stop
            outcome = type(exc).__name__
        finally:
            slots.release()
        # Measured from when the call was due, not when it started: a generator that falls
        # behind must not hide the wait (coordinated omission).
        result.latencies.append(loop.time() - due)
        result.outcomes[outcome] += 1

    loop = asyncio.get_running_loop()
    start = loop.time()
    interval = 1.0 / rate
    n = 0
    while True:
        due = start + n * interval
        now = loop.time()
        if now - start >= seconds:
            break
        if due > now:
            await asyncio.sleep(due - now)
        if slots.locked():
            result.throttled += 1
        await slots.acquire()
        task = loop.create_task(one(n, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    result.started = n
    if pending:
        await asyncio.wait(pending, timeout=30)
    result.seconds = loop.time() - start
    return result
