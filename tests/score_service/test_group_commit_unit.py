"""score_service.group_commit, pure: completions that queue while a transaction runs share the
next one, up to max_group and `concurrency` transactions at once, per board; each caller gets its
own outcome, refusal or failure, and an item the transaction hands back is written again first.
The queue is bounded, and an item whose caller's deadline passed before its transaction started
is dropped unwritten."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from common.errors import ServiceError
from score_service.anomalies import Anomaly
from score_service.config import GroupCommitSettings
from score_service.group_commit import GroupCommit, Outcome, Results
from scoreboard.score.v1 import score_service_pb2 as pb


def _outcome(score: int) -> Outcome:
    return pb.CompleteActionResponse(new_score=score), []


class Writer:
    """A transaction that records its groups and finishes when the test releases it."""

    def __init__(self, *, hold: bool = False) -> None:
        self.groups: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.answers: dict[int, Outcome | BaseException | None] = {}

    async def __call__(self, items: Sequence[int]) -> Results:
        self.groups.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return [self.answers.pop(i) if i in self.answers else _outcome(i) for i in items]


def _commit(writer: Writer, max_group: int = 64, concurrency: int = 1) -> GroupCommit[int]:
    return GroupCommit(writer, GroupCommitSettings(max_group=max_group, concurrency=concurrency))


async def _queued(commit: GroupCommit[int], *items: int, key: str = "default") -> list[Any]:
    """Submit each item from a task of its own; returns once all are queued or running."""
    tasks = [asyncio.create_task(commit.submit(key, i)) for i in items]
    for _ in range(3):
        await asyncio.sleep(0)
    return tasks


async def test_a_lone_completion_is_written_at_once_in_a_group_of_one() -> None:
    writer = Writer()
    reply, anomalies = await _commit(writer).submit("default", 7)
    assert reply.new_score == 7
    assert anomalies == []
    assert writer.groups == [[7]]


async def test_completions_arriving_during_a_transaction_share_the_next() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer)
    first = await _queued(commit, 1)
    rest = await _queued(commit, 2, 3, 4)
    assert writer.groups == [[1]]  # 2, 3 and 4 wait for the slot
    writer.release.set()
    replies = await asyncio.gather(*first, *rest)
    assert [r.new_score for r, _ in replies] == [1, 2, 3, 4]
    assert writer.groups == [[1], [2, 3, 4]]


async def test_groups_are_at_most_max_group_in_arrival_order() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer, max_group=2)
    tasks = await _queued(commit, 1, 2, 3, 4, 5, 6)
    writer.release.set()
    await asyncio.gather(*tasks)
    # The first goes alone (the slot was free); the rest queued behind it, two at a time.
    assert writer.groups == [[1], [2, 3], [4, 5], [6]]


async def test_at_most_concurrency_transactions_run_at_once() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer, max_group=1, concurrency=2)
    tasks = await _queued(commit, 1, 2, 3, 4)
    assert writer.groups == [[1], [2]]
    assert writer.in_flight == 2
    writer.release.set()
    await asyncio.gather(*tasks)
    assert writer.most_in_flight == 2
    assert sorted(writer.groups) == [[1], [2], [3], [4]]


async def test_each_board_has_its_own_groups() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer)
    tasks = await _queued(commit, 1, 2, 3, key="a")
    tasks += await _queued(commit, 4, 5, key="b")
    assert writer.groups == [[1]]
    writer.release.set()
    await asyncio.gather(*tasks)
    assert writer.groups == [[1], [2, 3], [4, 5]]  # board b's items never join a's groups


async def test_each_caller_gets_its_own_refusal() -> None:
    writer = Writer(hold=True)
    writer.answers[2] = ValueError("refused")
    commit = _commit(writer)
    tasks = await _queued(commit, 1, 2, 3)
    writer.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], ValueError)
    assert [r[0].new_score for r in (results[0], results[2])] == [1, 3]  # type: ignore[index]


async def test_a_failed_transaction_fails_every_item_of_its_group_only() -> None:
    calls = 0

    async def run(items: Sequence[int]) -> Results:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return [_outcome(i) for i in items]

    commit = GroupCommit(run, GroupCommitSettings(max_group=2, concurrency=1))
    tasks = await _queued(commit, 0)  # the failing transaction, alone; 1 and 2 queue behind
    tasks += await _queued(commit, 1, 2)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], ConnectionError)
    assert [r[0].new_score for r in results[1:]] == [1, 2]  # type: ignore[index]


async def test_an_item_handed_back_is_written_again_before_later_ones() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer, max_group=2)
    writer.answers[2] = None  # e.g. a lock conflict: submit it again
    tasks = await _queued(commit, 1, 2, 3, 4)
    writer.release.set()
    replies = await asyncio.gather(*tasks)
    assert [r.new_score for r, _ in replies] == [1, 2, 3, 4]
    assert writer.groups == [[1], [2, 3], [2, 4]]


async def test_a_cancelled_item_cancels_its_caller() -> None:
    writer = Writer()
    writer.answers[1] = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await _commit(writer).submit("default", 1)


async def test_a_caller_that_stops_waiting_still_gets_its_item_written() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer)
    [task] = await _queued(commit, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [later] = await _queued(commit, 2)
    writer.release.set()
    reply, _ = await later
    assert reply.new_score == 2
    assert writer.groups == [[1], [2]]  # the abandoned item was written all the same


async def test_anomalies_travel_with_the_outcome() -> None:
    flag = Anomaly("fast_completion", {"gap_seconds": 0.1})

    async def run(items: Sequence[int]) -> Results:
        return [(pb.CompleteActionResponse(new_score=i), [flag]) for i in items]

    commit = GroupCommit(run, GroupCommitSettings())
    assert await commit.submit("default", 5) == (pb.CompleteActionResponse(new_score=5), [flag])


async def test_the_group_size_is_measured() -> None:
    def observed() -> float:
        return REGISTRY.get_sample_value("scoreboard_score_group_size_count") or 0.0

    def summed() -> float:
        return REGISTRY.get_sample_value("scoreboard_score_group_size_sum") or 0.0

    count, total = observed(), summed()
    writer = Writer(hold=True)
    commit = _commit(writer)
    tasks = await _queued(commit, 1, 2, 3)
    writer.release.set()
    await asyncio.gather(*tasks)
    assert (observed() - count, summed() - total) == (2.0, 3.0)  # groups [1] and [2, 3]


async def test_a_full_queue_refuses_at_once_with_unavailable() -> None:
    writer = Writer(hold=True)
    commit = GroupCommit(writer, GroupCommitSettings(max_group=64, concurrency=1, queue_max=2))
    tasks = await _queued(commit, 1, 2, 3)  # 1 is being written, 2 and 3 wait
    assert commit.queued == 2
    with pytest.raises(ServiceError) as full:
        await commit.submit("default", 4)
    assert full.value.code == grpc.StatusCode.UNAVAILABLE
    assert full.value.metadata.get("retry_after")
    writer.release.set()
    await asyncio.gather(*tasks)
    assert writer.groups == [[1], [2, 3]]  # 4 was never queued
    assert commit.queued == 0


async def test_an_item_whose_deadline_passed_while_queued_is_dropped_unwritten() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer)
    first = await _queued(commit, 1)
    soon = time.monotonic() + 0.05
    late = asyncio.create_task(commit.submit("default", 2, deadline=soon))
    later = asyncio.create_task(commit.submit("default", 3, deadline=time.monotonic() + 60))
    await asyncio.sleep(0.1)  # 2's deadline passes while 1 is being written
    writer.release.set()
    await asyncio.gather(*first, later)
    with pytest.raises(ServiceError) as expired:
        await late
    assert expired.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert writer.groups == [[1], [3]]  # 2 was never handed to a transaction


async def test_an_item_whose_deadline_passes_during_its_transaction_is_still_answered() -> None:
    writer = Writer(hold=True)
    commit = _commit(writer)
    task = asyncio.create_task(commit.submit("default", 1, deadline=time.monotonic() + 0.05))
    await asyncio.sleep(0.1)  # its transaction started before the deadline, and goes on
    writer.release.set()
    reply, _ = await task
    assert reply.new_score == 1
    assert writer.groups == [[1]]


async def test_an_item_handed_back_after_its_deadline_is_dropped() -> None:
    writer = Writer(hold=True)
    writer.answers[1] = None  # not written (e.g. its COMMIT did not land): submit it again
    commit = _commit(writer)
    task = asyncio.create_task(commit.submit("default", 1, deadline=time.monotonic() + 0.05))
    await asyncio.sleep(0.1)
    writer.release.set()
    with pytest.raises(ServiceError):
        await task
    assert writer.groups == [[1]]  # not run a second time
