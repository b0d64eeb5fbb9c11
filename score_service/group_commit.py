"""Group commit: completions that arrive while earlier ones are being written share the next
transaction. No timer: a group starts as soon as a transaction slot is free and takes whatever
has queued (up to max_group), so a lone completion never waits and a busy process amortises its
round trips over everyone waiting.

The queue is bounded (queue_max, across boards): past it a completion is refused at once with
UNAVAILABLE and a retry_after, instead of waiting behind an outage it cannot outlive. Each item
carries its caller's deadline: an item whose deadline has passed when a group is formed is
dropped before anything is written (its caller already got DEADLINE_EXCEEDED); once its
transaction has started it is never dropped."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from prometheus_client import Counter, Histogram

from common.errors import ServiceError, unavailable
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
NOT_QUEUED = Counter(
    "scoreboard_score_group_commit_refused_total",
    "Completions never written by the group commit: the queue was full, or the caller's"
    " deadline passed while it waited.",
    ["reason"],
)


@dataclass
class _Waiting(Generic[T]):
    key: str
    item: T
    future: asyncio.Future[Outcome]
    # time.monotonic() after which the caller no longer waits; None: no limit.
    deadline: float | None


def _expired() -> ServiceError:
    # Nobody reads it (the caller's deadline has passed); it only settles the future.
    return ServiceError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        "the deadline passed before the completion was written",
    )


class GroupCommit(Generic[T]):
    def __init__(
        self, run: Callable[[Sequence[T]], Awaitable[Results]], settings: GroupCommitSettings
    ) -> None:
        self._run = run
        self._max = settings.max_group
        self._concurrency = settings.concurrency
        self._queue_max = settings.queue_max
        self._queues: dict[str, deque[_Waiting[T]]] = {}
        self._queued = 0
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Items waiting for a transaction (not those being written)."""
        return self._queued

    async def submit(self, key: str, item: T, *, deadline: float | None = None) -> Outcome:
        """Run `item` in a group of items with the same key (the board). Once queued it is
        written even if the caller stops waiting, unless its deadline (time.monotonic()) has
        passed before its transaction starts; an idempotency key makes a retry safe."""
        if self._queued >= self._queue_max:
            NOT_QUEUED.labels("queue_full").inc()
            raise unavailable("too many completions are waiting to be written; retry")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        # A caller that stopped waiting never reads the outcome; mark it read.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queues.setdefault(key, deque()).append(_Waiting(key, item, future, deadline))
        self._queued += 1
        self._dispatch()
        return await asyncio.shield(future)

    def _dispatch(self) -> None:
        while self._running < self._concurrency:
            queue = next((q for q in self._queues.values() if q), None)
            if queue is None:
                return
            group = self._take(queue)
            if not group:
                continue
            self._running += 1
            task = asyncio.create_task(self._execute(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, queue: deque[_Waiting[T]]) -> list[_Waiting[T]]:
        """The next group: up to max_group items in arrival order, without those whose
        deadline has passed (dropped here, before anything of theirs is written)."""
        now = time.monotonic()
        group: list[_Waiting[T]] = []
        while queue and len(group) < self._max:
            waiting = queue.popleft()
            self._queued -= 1
            if waiting.deadline is not None and waiting.deadline <= now:
                NOT_QUEUED.labels("deadline").inc()
                if not waiting.future.done():
                    waiting.future.set_exception(_expired())
                continue
            group.append(waiting)
        return group

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
            if result is None:
                # Not written: submitted again, even for a caller that stopped waiting (its
                # deadline decides whether it is still written).
                again.append(waiting)
            elif waiting.future.done():
                continue
            elif isinstance(result, asyncio.CancelledError):
                waiting.future.cancel()
            elif isinstance(result, BaseException):
                waiting.future.set_exception(result)
            else:
                waiting.future.set_result(result)
        for waiting in reversed(again):
            self._queues.setdefault(waiting.key, deque()).appendleft(waiting)
        self._queued += len(again)
        self._dispatch()
