"""Group commit: completions that arrive while earlier ones are being written share the next
transaction. No timer: a group starts as soon as a transaction slot is free and takes whatever
has queued (up to max_group), so a lone completion never waits and a busy process amortises its
round trips over everyone waiting."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Histogram

from score_service.anomalies import Anomaly
from score_service.config import GroupCommitSettings
from scoreboard.score.v1 import score_service_pb2 as pb

T = TypeVar("T")
Outcome = tuple[pb.CompleteActionResponse, list[Anomaly]]
# Per item: the outcome, its refusal or failure, or None to submit it again.
Results = list[Outcome | BaseException | None]

GROUP_SIZE = Histogram(
    "scoreboard_score_group_size",
    "Completions written per transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


@dataclass
class _Waiting(Generic[T]):
    key: str
    item: T
    future: asyncio.Future[Outcome]


class GroupCommit(Generic[T]):
    def __init__(
        self, run: Callable[[Sequence[T]], Awaitable[Results]], settings: GroupCommitSettings
    ) -> None:
        self._run = run
        self._max = settings.max_group
        self._concurrency = settings.concurrency
        self._queues: dict[str, deque[_Waiting[T]]] = {}
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: str, item: T) -> Outcome:
        """Run `item` in a group of items with the same key (the board). Once queued it is
        written even if the caller stops waiting; an idempotency key makes a retry safe."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        # A caller that stopped waiting never reads the outcome; mark it read.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queues.setdefault(key, deque()).append(_Waiting(key, item, future))
        self._dispatch()
        return await asyncio.shield(future)

    def _dispatch(self) -> None:
        while self._running < self._concurrency:
            queue = next((q for q in self._queues.values() if q), None)
            if queue is None:
                return
            group = [queue.popleft() for _ in range(min(self._max, len(queue)))]
            self._running += 1
            task = asyncio.create_task(self._execute(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, group: list[_Waiting[T]]) -> None:
        GROUP_SIZE.observe(len(group))
        try:
            results: Results = await self._run([w.item for w in group])
        except BaseException as exc:
            results = [exc] * len(group)
        finally:
            self._running -= 1
        again: list[_Waiting[T]] = []
        for waiting, result in zip(group, results, strict=True):
            if waiting.future.done():
                continue
            if result is None:
                again.append(waiting)
            elif isinstance(result, asyncio.CancelledError):
                waiting.future.cancel()
            elif isinstance(result, BaseException):
                waiting.future.set_exception(result)
            else:
                waiting.future.set_result(result)
        for waiting in reversed(again):
            self._queues.setdefault(waiting.key, deque()).appendleft(waiting)
        self._dispatch()
