"""The personal live rank on a lower-is-better board, through the whole running stack: the default
board is made `asc` (with tiers, one of them a score cutoff) by UpdateBoard while it has no scores;
players complete actions through the edge; a subscriber's RANK_UPDATE (/ws SUBSCRIBE_RANK and
gRPC WatchRank alike) reports its total as PostgreSQL holds it (not the negated sorted-set score),
the rank, tier and percentile GetUserRank gives, and the distance down to the nearest better
total, for the initial rank, an overtake and its own completion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lpb
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings
from tests.conftest import StackFactory
from tests.score_service.helpers import create_action
from tests.stream_service.rank_watcher import RankWatcher
from tests.support.boards import set_default_board_tiers
from tests.support.clients import Api, Player, Viewer
from tests.support.servers import wait_for
from tests.support.stack import Stack

RANKS = RankSettings(tick_seconds=0.5, min_interval_seconds=0.0, percentile_min_players=1)
TIERS = [
    lpb.TierDefinition(tier_id="gold", name="Gold", top_rank=1),
    # On an asc board a score cutoff means "at most": a negated total would always meet it.
    lpb.TierDefinition(tier_id="silver", name="Silver", min_score=14),
    lpb.TierDefinition(tier_id="bronze", name="Bronze"),
]
BRONZE = {"id": "bronze", "name": "Bronze"}


@pytest.fixture
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(
        stream={"rank": RANKS}, leaderboard={"percentile_min_players": 1}
    ) as stack:
        yield stack


async def _complete(api: Api, player: Player, action_id: str, times: int) -> None:
    for _ in range(times):
        reply = await api.complete(player, action_id)
        assert reply.status_code == 200, reply.text


async def _rank(api: Api, player: Player) -> dict[str, Any]:
    reply = await api.http.get(f"/api/leaderboard/user/{player.user_id}", headers=player.auth)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


def _update(reason: str, score: int) -> Any:
    """Matches the RANK_UPDATE of this reason and score."""
    wanted = ("RANK_UPDATE", reason, score)
    return lambda m: (m["type"], m["data"].get("reason"), m["data"].get("score")) == wanted


def _seen(data: dict[str, Any]) -> tuple[Any, ...]:
    return data["rank"], data["score"], data["totalPlayers"], data["tier"], data["distanceToNext"]


def _watched(update: pb.RankUpdate) -> tuple[Any, ...]:
    tier = {"id": update.tier, "name": update.tier_name} if update.HasField("tier") else None
    return update.rank, update.score, update.total_players, tier, update.distance_to_next


async def test_a_lower_is_better_board_reports_true_totals_and_ranks(stack: Stack) -> None:
    # No restart: the running consumer reads the board's order at every batch (it may
    # change until the board has scores).
    await set_default_board_tiers(stack, TIERS, sort_order="asc")
    action = await create_action(stack, base_points=7, daily_limit=1000)
    async with Api(stack.edge_url) as api:
        alice = await api.register()
        bob = await api.register()
        carol = await api.register()
        await _complete(api, bob, action.action_id, 1)  # 7: first (lower is better)
        await _complete(api, alice, action.action_id, 3)  # 21: second

        async def ranked() -> bool:
            url = f"/api/leaderboard/user/{alice.user_id}"
            reply = await api.http.get(url, headers=alice.auth)
            return reply.status_code == 200 and reply.json()["data"]["rank"] == 2

        await wait_for(ranked, timeout=20)
        rest = await _rank(api, alice)
        assert (rest["score"], rest["tier"]) == (21, BRONZE)

        viewer = await Viewer.open(f"{stack.ws_url}?token={alice.access_token}")
        watcher = RankWatcher(stack.address("stream"), alice.access_token)
        try:
            await viewer.connection.send(orjson.dumps({"type": "SUBSCRIBE_RANK", "data": {}}))
            first = (await viewer.wait(_update("initial", 21)))["data"]
            assert _seen(first) == (2, 21, 2, BRONZE, 14)  # 14 more than Bob's 7
            assert first["percentile"] == rest["percentile"] == 100.0
            initial = await watcher.wait(lambda u: u.reason == pb.RANK_REASON_INITIAL)
            assert _watched(initial) == _seen(first)

            await _complete(api, carol, action.action_id, 1)  # 7: ties Bob, passes Alice
            passed = (await viewer.wait(_update("overtaken", 21)))["data"]
            assert _seen(passed) == (3, 21, 3, BRONZE, 14)
            assert passed["overtakenBy"]["userId"] == carol.user_id
            overtaken = await watcher.wait(lambda u: u.reason == pb.RANK_REASON_OVERTAKEN)
            assert _watched(overtaken) == _seen(passed)

            await _complete(api, alice, action.action_id, 1)  # 28: further down, still third
            own = (await viewer.wait(_update("self", 28)))["data"]
            assert _seen(own) == (3, 28, 3, BRONZE, 21)
            mine = await watcher.wait(lambda u: u.reason == pb.RANK_REASON_SELF)
            assert _watched(mine) == _seen(own)
        finally:
            await watcher.close()
            await viewer.close()

        rest = await _rank(api, alice)
        assert (rest["rank"], rest["score"], rest["tier"]) == (3, 28, BRONZE)
        assert (await _rank(api, bob))["tier"] == {"id": "gold", "name": "Gold"}
