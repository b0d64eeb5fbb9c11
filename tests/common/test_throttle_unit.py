"""common.logs.Throttle: one warning per interval and key (pure logic, a fake clock)."""

from __future__ import annotations

from common.logs import Throttle


def test_due_once_per_interval_and_key() -> None:
    now = [100.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle.due("redis")
    assert not throttle.due("redis")
    assert throttle.due("database")  # keys are apart
    now[0] = 109.9
    assert not throttle.due("redis")
    now[0] = 110.0
    assert throttle.due("redis")
    assert not throttle.due("redis")
