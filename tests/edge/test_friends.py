"""POST /api/leaderboard/users (a friends list) and the percentile of GET
/api/leaderboard/user/{id}, through the real edge: the caller added, ranks that agree with the
user rank route, ties sharing the list rank, users without a score listed with nulls, every
refusal in the JSON error envelope, and the route in the OpenAPI document."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.clients import Api, Player
from tests.support.servers import wait_for
from tests.support.stack import Stack

ROUTE = "/api/leaderboard/users"
KEYS = {"userId", "ranked", "rank", "listRank", "username", "score", "tier"}


def _envelope(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert set(body) == {"success", "error", "code"}
    assert body["success"] is False and body["code"] == code and body["error"]
    return body


async def _scored(api: Api, action: str) -> Player:
    """A new player with the points of one action, once the ranking has them."""
    player = await api.register()
    assert (await api.complete(player, action)).status_code == 200

    async def ranked() -> bool:
        reply = await api.http.get(f"/api/leaderboard/user/{player.user_id}", headers=player.auth)
        return reply.status_code == 200

    await wait_for(ranked, timeout=20)
    return player


async def _rank(api: Api, player: Player, user_id: str) -> dict[str, Any]:
    reply = await api.http.get(f"/api/leaderboard/user/{user_id}", headers=player.auth)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


async def test_a_friends_list_with_the_caller(shared_stack: Stack, api: Api) -> None:
    me = await _scored(api, "daily-login")  # 10 points
    tied = await _scored(api, "daily-login")  # 10 points, reached later
    ahead = await _scored(api, "complete-quest")  # 60 points
    newcomer = await api.register()  # no score
    nobody = str(uuid.uuid4())

    reply = await api.http.post(
        ROUTE,
        json={"userIds": [nobody, tied.user_id, newcomer.user_id, ahead.user_id, tied.user_id]},
        headers=me.auth,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True and set(body["data"]) == {"entries", "totalUsers"}
    entries = body["data"]["entries"]
    assert all(set(e) == KEYS for e in entries)
    # The caller is added; the ranked come first in the board's order, then the others as asked.
    assert [e["userId"] for e in entries] == [
        ahead.user_id,
        me.user_id,
        tied.user_id,
        nobody,
        newcomer.user_id,
    ]
    assert [e["listRank"] for e in entries] == [1, 2, 2, None, None]
    for entry, player in zip(entries[:3], (ahead, me, tied), strict=True):
        rank = await _rank(api, me, player.user_id)
        assert entry == {
            "userId": player.user_id,
            "ranked": True,
            "rank": rank["rank"],
            "listRank": entry["listRank"],
            "username": player.display_name,
            "score": rank["score"],
            "tier": None,
        }
    assert entries[1]["rank"] == entries[2]["rank"]  # a tie shares the global rank too
    for entry in entries[3:]:
        assert entry == {
            "userId": entry["userId"],
            "ranked": False,
            "rank": None,
            "listRank": None,
            "username": None,
            "score": None,
            "tier": None,
        }
    assert body["data"]["totalUsers"] == (await _rank(api, me, me.user_id))["totalUsers"]

    # A newcomer's own list: just themselves, unranked; uppercase ids are the same users.
    alone = await api.http.post(
        ROUTE, json={"userIds": [me.user_id.upper()]}, headers=newcomer.auth
    )
    assert [(e["userId"], e["ranked"]) for e in alone.json()["data"]["entries"]] == [
        (me.user_id, True),
        (newcomer.user_id, False),
    ]
    board = await api.http.post(ROUTE, json={"userIds": [], "board": "default"}, headers=me.auth)
    assert [e["userId"] for e in board.json()["data"]["entries"]] == [me.user_id]


async def test_the_user_rank_has_a_percentile(shared_stack: Stack, api: Api) -> None:
    me = await _scored(api, "share-replay")
    rank = await _rank(api, me, me.user_id)
    assert "percentile" in rank
    if rank["totalUsers"] < 100:  # the default minimum population
        assert rank["percentile"] is None
    else:
        assert 0.1 <= rank["percentile"] <= 100.0


async def test_refusals_use_the_error_envelope(shared_stack: Stack, api: Api) -> None:
    player = await api.register()
    auth = player.auth
    _envelope(await api.http.post(ROUTE, json={"userIds": []}), 401, "UNAUTHENTICATED")
    body = _envelope(
        await api.http.post(ROUTE, json={"userIds": [str(uuid.uuid4()), "nope"]}, headers=auth),
        400,
        "INVALID_ARGUMENT",
    )
    assert body["error"] == "userIds[1] must be a user id (UUID)"
    too_many = [str(uuid.uuid4()) for _ in range(101)]
    body = _envelope(
        await api.http.post(ROUTE, json={"userIds": too_many}, headers=auth),
        422,
        "VALIDATION_FAILED",
    )
    assert body["error"].startswith("userIds:")
    assert (
        await api.http.post(ROUTE, json={"userIds": too_many[:100]}, headers=auth)
    ).status_code == 200
    _envelope(
        await api.http.post(ROUTE, json={"userIds": [], "friends": True}, headers=auth),
        422,
        "VALIDATION_FAILED",
    )
    _envelope(await api.http.post(ROUTE, json={}, headers=auth), 422, "VALIDATION_FAILED")
    _envelope(
        await api.http.post(ROUTE, json={"userIds": "everyone"}, headers=auth),
        422,
        "VALIDATION_FAILED",
    )
    _envelope(
        await api.http.post(ROUTE, json={"userIds": [], "board": "Not A Board"}, headers=auth),
        422,
        "VALIDATION_FAILED",
    )
    _envelope(
        await api.http.post(ROUTE, json={"userIds": [], "board": "no-such-board"}, headers=auth),
        404,
        "NOT_FOUND",
    )
    _envelope(
        await api.http.post(
            ROUTE, content=b"{", headers={**auth, "content-type": "application/json"}
        ),
        400,
        "INVALID_JSON",
    )
    _envelope(
        await api.http.post(
            ROUTE, content=b'{"userIds": []}', headers={**auth, "content-type": "text/plain"}
        ),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    huge = b'{"userIds": ["' + b"a" * 20_000 + b'"]}'
    _envelope(
        await api.http.post(
            ROUTE, content=huge, headers={**auth, "content-type": "application/json"}
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    )


async def test_the_openapi_document_lists_the_route(shared_stack: Stack, api: Api) -> None:
    document = (await api.http.get("/openapi.json")).json()
    operation = document["paths"][ROUTE]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert {"200", "400", "401", "404", "413", "415", "422"} <= set(operation["responses"])
    schemas = document["components"]["schemas"]
    body = schemas["UsersRanksBody"]
    assert body["required"] == ["userIds"]
    assert body["properties"]["userIds"]["maxItems"] == 100
    assert set(schemas["ListedUser"]["properties"]) == KEYS
    assert "percentile" in schemas["UserRank"]["properties"]
