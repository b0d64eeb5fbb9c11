"""Process entry: the event loop (uvloop when available) and the shutdown signal."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

log = logging.getLogger("scoreboard.lifecycle")


# Collect the young generation every 20,000 net container allocations instead of 700: a served
# call allocates a few hundred short-lived objects (protobuf, closures, futures), freed by
# reference counting anyway, so the default threshold ran a collection every call or two (about
# 4 % of score_service's CPU under load, py-spy). The older generations keep their ratios.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Fewer garbage collections for a long-running server; call once at start."""
    gc.set_threshold(*GC_THRESHOLDS)


def run_main(main: Coroutine[Any, Any, None]) -> None:
    tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        asyncio.run(main)
        return
    uvloop.run(main)


async def wait_for_shutdown() -> str:
    """Wait for SIGTERM or SIGINT; return the signal's name."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig.name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def cancel_and_wait(*tasks: asyncio.Task[Any], patience: float = 1.0) -> None:
    """Cancel the tasks and wait until every one has ended. A task that swallows its
    cancellation (Python 3.11's wait_for can, when the awaited result and the cancel arrive
    together) is cancelled again after `patience` seconds instead of blocking the shutdown.
    Re-raises the first error a task ended with."""
    for task in tasks:
        task.cancel()
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=patience)
        for task in pending:
            log.warning("task %s survived its cancellation; cancelling it again", task.get_name())
            task.cancel()
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def sweep_forever(sweep: Callable[[], object], idle_seconds: float) -> NoReturn:
    """Call `sweep` every half `idle_seconds` (at least 50 ms, at most 10 s apart) until
    cancelled, so what sat unused for idle_seconds is dropped at most half that later."""
    while True:
        await asyncio.sleep(max(0.05, min(idle_seconds / 2, 10.0)))
        sweep()


def raise_if_cancelling() -> None:
    """For long-running loops: a library may swallow our task's cancellation (redis-py does, now
    and then, and carries on); call this at the top of each iteration and in broad exception
    handlers so that shutdown never hangs."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError
