"""The upstream calls of one HTTP request share the request's budget (pure logic of
edge.upstream.Upstream.call, with a stand-in for the gRPC method)."""

from __future__ import annotations

import time
from typing import Any, cast

import grpc
import pytest

from common.errors import ServiceError
from edge.upstream import Upstream, request_started_var


def _upstream(timeout: float) -> Upstream:
    none = cast(Any, None)
    return Upstream(
        channels=[],
        auth=none,
        score=none,
        leaderboard=none,
        stream=none,
        service_token=none,
        timeout=timeout,
    )


class _Recorder:
    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def __call__(self, request: Any, *, metadata: Any, timeout: float) -> str:
        self.timeouts.append(timeout)
        return "ok"


async def test_a_call_outside_a_request_gets_the_whole_timeout() -> None:
    method = _Recorder()
    assert await _upstream(5.0).call(method, None, token=None) == "ok"
    assert method.timeouts == [5.0]


async def test_a_call_late_in_a_request_gets_only_what_is_left() -> None:
    method = _Recorder()
    reset = request_started_var.set(time.monotonic() - 3.0)
    try:
        await _upstream(5.0).call(method, None, token=None)
        await _upstream(5.0).call(method, None, token=None, timeout=10.0)
    finally:
        request_started_var.reset(reset)
    for given in method.timeouts:
        assert 1.5 < given <= 2.0, method.timeouts


async def test_a_request_out_of_time_is_answered_without_calling() -> None:
    method = _Recorder()
    reset = request_started_var.set(time.monotonic() - 5.0)
    try:
        with pytest.raises(ServiceError) as late:
            await _upstream(5.0).call(method, None, token=None)
    finally:
        request_started_var.reset(reset)
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert late.value.metadata.get("retry_after")
    assert method.timeouts == []
