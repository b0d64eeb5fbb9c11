"""The pure part of the personal live rank: percentile (the same as GetUserRank's), thresholds,
what the ticker calls significant, and coalescing with a throttle per watch."""

from __future__ import annotations

import asyncio
import time

from common.tiers import Tier
from common.tiers import percentile as leaderboard_percentile
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings
from stream_service.rank_hub import RankWatch
from stream_service.ranks import (
    Player,
    RankState,
    build_update,
    crossed,
    significant,
)

SETTINGS = RankSettings(percentile_min_players=100)


def test_percentile_is_get_user_rank_s() -> None:
    """RANK_UPDATE's percentile is the one formula GetUserRank uses (common.tiers), with the
    configured minimum population."""
    for total in (0, 1, 99, 100, 101, 1000, 30_001):
        for rank in (0, 1, 2, 7, 50, 99, 100, 101, total - 1, total, total + 1):
            for minimum in (0, 100):
                settings = RankSettings(percentile_min_players=minimum)
                update = build_update(
                    "default", "u", RankState(rank, 5, total), pb.RANK_REASON_SELF, settings
                )
                shown = update.percentile if update.HasField("percentile") else None
                assert shown == leaderboard_percentile(rank, total, minimum)


def test_the_distance_to_the_next_better_total_on_either_order() -> None:
    """Points to the nearest better total: up on a higher-is-better board, down on an `asc` one
    (where that total is lower); absent at rank 1."""
    for state, distance in (
        (RankState(3, 21, 9, next_score=28), 7),
        (RankState(3, 28, 9, next_score=7), 21),
        (RankState(2, 50, 9, next_score=50 + 1), 1),
    ):
        update = build_update("default", "u", state, pb.RANK_REASON_SELF, SETTINGS)
        assert update.distance_to_next == distance
    first = build_update("default", "u", RankState(1, 7, 9), pb.RANK_REASON_SELF, SETTINGS)
    assert not first.HasField("distance_to_next")


def test_thresholds_crossed() -> None:
    assert crossed(RankState(11, 0, 50), RankState(9, 0, 50), SETTINGS) == ["top10"]
    assert crossed(RankState(150, 0, 50), RankState(5, 0, 50), SETTINGS) == ["top10", "top100"]
    assert crossed(RankState(9, 0, 50), RankState(3, 0, 50), SETTINGS) == []
    assert crossed(RankState(5, 0, 50), RankState(0, 0, 50), SETTINGS) == [
        "top10",
        "top100",
        "top1000",
    ]
    # Percentile bands count only with a percentile shown (100+ ranked users).
    assert crossed(RankState(200, 0, 1000), RankState(300, 0, 1000), SETTINGS) == ["top25%"]
    assert crossed(RankState(200, 0, 50), RankState(300, 0, 50), SETTINGS) == []


SILVER = Tier("silver", "Silver", "min_score", 100)
BRONZE = Tier("bronze", "Bronze")


def test_a_tier_change_is_a_threshold() -> None:
    """Entering a tier names the tier left and the tier entered; the ticker pushes it even for
    a move far below its share of the rank; the update carries the tier's id and name."""
    before = RankState(5000, 99, 10**6, 100, BRONZE)
    after = RankState(4999, 100, 10**6, 101, SILVER)
    assert crossed(before, after, SETTINGS) == ["tier:bronze", "tier:silver"]
    assert significant(before, after, SETTINGS)
    assert crossed(after, RankState(0, 0, 10**6), SETTINGS)[-1:] == ["tier:silver"]
    assert crossed(after, RankState(4000, 150, 10**6, 151, SILVER), SETTINGS) == []
    update = build_update("default", "u", after, pb.RANK_REASON_THRESHOLD, SETTINGS)
    assert (update.tier, update.tier_name) == ("silver", "Silver")
    untiered = build_update("default", "u", RankState(3, 5, 10), pb.RANK_REASON_SELF, SETTINGS)
    assert not untiered.HasField("tier") and untiered.tier_name == ""


def test_significant_moves() -> None:
    assert significant(RankState(500, 0, 10**6), RankState(505, 0, 10**6), SETTINGS)
    assert not significant(RankState(500, 0, 10**6), RankState(504, 0, 10**6), SETTINGS)
    assert significant(RankState(5, 0, 50), RankState(6, 0, 50), SETTINGS)
    assert significant(RankState(0, 0, 50), RankState(40, 0, 50), SETTINGS)
    assert not significant(RankState(0, 0, 50), RankState(0, 0, 51), SETTINGS)


async def test_a_watch_throttles_and_coalesces_to_the_latest() -> None:
    watch = RankWatch("default", "u", RankSettings(min_interval_seconds=0.3))
    watch.offer(RankState(20, 5, 50), pb.RANK_REASON_INITIAL)
    first = await watch.next()
    assert first is not None and first.reason == pb.RANK_REASON_INITIAL
    watch.offer(RankState(21, 5, 50), pb.RANK_REASON_OVERTAKEN, by=Player("b", "Bob"))
    watch.offer(RankState(22, 5, 50), pb.RANK_REASON_OVERTAKEN, by=Player("c", "Cat"))
    watch.offer(RankState(23, 5, 50), pb.RANK_REASON_MOVED)
    started = time.monotonic()
    second = await watch.next()
    assert time.monotonic() - started >= 0.25
    assert second is not None
    assert (second.rank, second.reason, second.overtaken_by.username) == (
        23,
        pb.RANK_REASON_OVERTAKEN,
        "Cat",
    )
    watch.close()
    assert await asyncio.wait_for(watch.next(), 1) is None
