"""Tiers in the personal live rank (issue 18), through the real stack: the default board gets tiers
with UpdateBoard (leaderboard_service copies them into Redis, the rank hub reads them), a
player's RANK_UPDATE carries its tier from the first update, entering a tier by its own score is
a THRESHOLD naming the tier left and the tier entered, and a changed definition is found by the
ticker and pushed as a THRESHOLD too."""

from __future__ import annotations

import secrets
from typing import Any

from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lpb
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings
from tests.conftest import StackFactory
from tests.score_service.helpers import create_action, score_client
from tests.stream_service.rank_watcher import RankWatcher
from tests.support.boards import set_default_board_tiers
from tests.support.ranks import place_players
from tests.support.stack import Stack
from tests.support.tokens import register

RANKS = RankSettings(tick_seconds=0.3, min_interval_seconds=0.0, percentile_min_players=10**9)
TIERS = [
    lpb.TierDefinition(tier_id="gold", name="Gold", top_rank=3),
    lpb.TierDefinition(tier_id="silver", name="Silver", min_score=50),
    lpb.TierDefinition(tier_id="bronze", name="Bronze"),
]


async def _complete(stack: Stack, token: str, action_id: str) -> None:
    async with score_client(stack, token) as client:
        await client.complete(action_id)


def _tier(update: Any) -> tuple[str, str] | None:
    return (update.tier, update.tier_name) if update.HasField("tier") else None


async def test_entering_a_tier_is_a_threshold(stack_factory: StackFactory) -> None:
    async with stack_factory(with_edge=False, stream={"rank": RANKS}) as stack:
        await set_default_board_tiers(stack, TIERS)
        await place_players(stack.redis, stack.keys.board("default"), [1000, 999, 998])
        small = await create_action(stack, base_points=10, daily_limit=10)
        step = await create_action(stack, base_points=45, daily_limit=10)
        jump = await create_action(stack, base_points=2000, daily_limit=10)
        _, token = await register(stack, f"tina{secrets.token_hex(3)}")
        await _complete(stack, token, small.action_id)
        watcher = RankWatcher(stack.address("stream"), token)
        try:
            first = await watcher.wait(lambda u: u.score == 10)
            assert (first.rank, _tier(first)) == (4, ("bronze", "Bronze"))

            await _complete(stack, token, step.action_id)  # 55: Silver, still 4th
            silver = await watcher.wait(lambda u: u.score == 55)
            assert silver.reason == pb.RANK_REASON_THRESHOLD
            assert _tier(silver) == ("silver", "Silver")
            assert list(silver.crossed) == ["tier:bronze", "tier:silver"]

            await _complete(stack, token, jump.action_id)  # 2055: first, Gold
            gold = await watcher.wait(lambda u: u.score == 2055)
            assert gold.reason == pb.RANK_REASON_THRESHOLD
            assert (gold.rank, _tier(gold)) == (1, ("gold", "Gold"))
            assert "tier:silver" in gold.crossed and "tier:gold" in gold.crossed

            # A new definition: the ticker finds the changed tier without any score change.
            await set_default_board_tiers(
                stack,
                [lpb.TierDefinition(tier_id="champion", name="Champion", top_rank=1), *TIERS[1:]],
            )
            champion = await watcher.wait(lambda u: u.tier == "champion")
            assert champion.reason == pb.RANK_REASON_THRESHOLD
            assert list(champion.crossed) == ["tier:gold", "tier:champion"]
            assert champion.tier_name == "Champion"

            # Tiers removed: the update says so (no tier) and names the tier left.
            await set_default_board_tiers(stack, [])
            plain = await watcher.wait(lambda u: u.rank == 1 and not u.HasField("tier"))
            assert plain.reason == pb.RANK_REASON_THRESHOLD
            assert list(plain.crossed) == ["tier:champion"]
        finally:
            await watcher.close()
