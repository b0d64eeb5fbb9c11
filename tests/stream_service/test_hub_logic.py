"""Pure logic of the snapshot hub: conflation for a late watcher, never going back."""

from __future__ import annotations

import asyncio

from scoreboard.leaderboard.v1 import leaderboard_pb2
from stream_service.hub import SnapshotHub


def _snapshot(seq: int, period: int = 0) -> leaderboard_pb2.Top10Snapshot:
    return leaderboard_pb2.Top10Snapshot(board_id="default", sequence=seq, period=period)


async def test_hub_conflates_for_a_late_watcher_and_never_goes_back() -> None:
    hub = SnapshotHub(redis=None, keys=None)  # type: ignore[arg-type]
    hub.offer(_snapshot(1))
    assert (await hub.wait_newer((0, -1))).sequence == 1  # type: ignore[union-attr]
    for seq in (2, 3, 4):
        hub.offer(_snapshot(seq))
    assert not hub.offer(_snapshot(3))  # older than held: refused
    latest = await hub.wait_newer((0, 1))
    assert latest is not None
    assert latest.sequence == 4  # the newest only, 2 and 3 skipped
    waiting = asyncio.create_task(hub.wait_newer((0, 4)))
    await asyncio.sleep(0)
    assert not waiting.done()
    hub.close()
    assert await waiting is None


async def test_a_later_period_is_newer_whatever_its_sequence() -> None:
    hub = SnapshotHub(redis=None, keys=None)  # type: ignore[arg-type]
    hub.offer(_snapshot(900, period=1))
    assert hub.offer(_snapshot(0, period=2))  # the new period's empty board, sequence 0
    assert not hub.offer(_snapshot(901, period=1))  # a late change of the closed period
    latest = await hub.wait_newer((1, 900))
    assert latest is not None
    assert (latest.period, latest.sequence) == (2, 0)
