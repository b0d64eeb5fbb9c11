"""Tiers at the edge (issue 18), through the whole running stack: GET /api/leaderboard/user/{id}
and POST /api/leaderboard/users give {id, name} of the player's tier (null without tiers), and a
socket subscribed to its rank gets RANK_UPDATE with the tier and reason "threshold" when its own
completion enters a tier; tied players share the tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lpb
from stream_service.config import RankSettings
from tests.conftest import StackFactory
from tests.score_service.helpers import create_action
from tests.support.boards import set_default_board_tiers
from tests.support.clients import Api, Player, Viewer
from tests.support.stack import Stack

RANKS = RankSettings(tick_seconds=0.5, min_interval_seconds=0.0)
GOLD = {"id": "gold", "name": "Gold"}
SILVER = {"id": "silver", "name": "Silver"}
BRONZE = {"id": "bronze", "name": "Bronze"}


@pytest.fixture
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(stream={"rank": RANKS}) as stack:
        yield stack


async def _rank(api: Api, player: Player) -> dict[str, Any]:
    reply = await api.http.get(f"/api/leaderboard/user/{player.user_id}", headers=player.auth)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


async def _complete(api: Api, player: Player, action_id: str, times: int) -> None:
    for _ in range(times):
        reply = await api.complete(player, action_id)
        assert reply.status_code == 200, reply.text


def _update(reason: str, score: int) -> Any:
    def matches(message: dict[str, Any]) -> bool:
        data = message["data"]
        return bool(
            message["type"] == "RANK_UPDATE" and data["reason"] == reason and data["score"] == score
        )

    return matches


async def test_rest_and_socket_give_the_tier(stack: Stack) -> None:
    action = await create_action(stack, base_points=7, daily_limit=1000)
    async with Api(stack.edge_url) as api:
        alice = await api.register()
        bob = await api.register()
        await _complete(api, bob, action.action_id, 3)  # 21
        await _complete(api, alice, action.action_id, 1)  # 7
        assert (await _rank(api, alice))["tier"] is None  # no tiers yet

        await set_default_board_tiers(
            stack,
            [
                lpb.TierDefinition(tier_id="gold", name="Gold", top_rank=1),
                lpb.TierDefinition(tier_id="silver", name="Silver", min_score=14),
                lpb.TierDefinition(tier_id="bronze", name="Bronze"),
            ],
        )
        assert (await _rank(api, alice))["tier"] == BRONZE
        assert (await _rank(api, bob))["tier"] == GOLD

        viewer = await Viewer.open(f"{stack.ws_url}?token={alice.access_token}")
        try:
            await viewer.connection.send(orjson.dumps({"type": "SUBSCRIBE_RANK", "data": {}}))
            first = (await viewer.wait(_update("initial", 7)))["data"]
            assert (first["rank"], first["tier"]) == (2, BRONZE)

            await _complete(api, alice, action.action_id, 1)  # 14: Silver
            silver = (await viewer.wait(_update("threshold", 14), timeout=10))["data"]
            assert (silver["rank"], silver["tier"]) == (2, SILVER)
            assert silver["crossed"] == ["tier:bronze", "tier:silver"]

            await _complete(api, alice, action.action_id, 1)  # 21: tied first with Bob, Gold
            gold = (await viewer.wait(_update("threshold", 21), timeout=10))["data"]
            assert (gold["rank"], gold["tier"]) == (1, GOLD)
        finally:
            await viewer.close()

        mine, his = await _rank(api, alice), await _rank(api, bob)
        assert (mine["rank"], mine["tier"]) == (his["rank"], his["tier"]) == (1, GOLD)
        listed = await api.http.post(
            "/api/leaderboard/users", json={"userIds": [bob.user_id]}, headers=alice.auth
        )
        assert listed.status_code == 200, listed.text
        tiers = {e["userId"]: e["tier"] for e in listed.json()["data"]["entries"]}
        assert tiers == {alice.user_id: GOLD, bob.user_id: GOLD}
