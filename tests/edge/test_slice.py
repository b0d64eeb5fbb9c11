"""The thinnest real slice, through every hop: edge -> ScoreService -> PostgreSQL + outbox ->
Redis Stream -> LeaderboardService -> Redis pub/sub -> stream_service WatchTop10 -> edge ->
socket."""

from __future__ import annotations

from tests.support.clients import Api, Viewer
from tests.support.stack import Stack


async def test_register_login_complete_and_watch(shared_stack: Stack, api: Api) -> None:
    player = await api.register()
    login = await api.http.post(
        "/api/auth/login", json={"username": player.username, "password": "correct horse battery"}
    )
    assert login.status_code == 200
    session = login.json()["data"]
    assert set(session) >= {"accessToken", "refreshToken", "expiresIn", "tokenType", "user"}
    player.access_token = session["accessToken"]

    catalog = await api.http.get("/api/actions")
    assert catalog.status_code == 200
    action_ids = {a["actionId"] for a in catalog.json()["data"]["actions"]}
    assert "daily-login" in action_ids

    viewer = await Viewer.open(f"{shared_stack.ws_url}?token={player.access_token}")
    try:
        ack = await viewer.wait(lambda m: True)
        assert ack["type"] == "CONNECTION_ACK"
        assert ack["data"]["userId"] == player.user_id
        assert ack["data"]["connectedAt"].endswith("Z")

        reply = await api.complete(player, "daily-login")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["success"] is True
        assert body["data"]["newScore"] == 10
        assert body["data"]["increment"] == 10
        assert body["data"]["rank"] >= 1
        assert body["data"]["message"] == "Action completed successfully"

        update = await viewer.wait(
            lambda m: (
                m["type"] == "LEADERBOARD_UPDATE"
                and any(
                    e["userId"] == player.user_id and e["score"] == 10 for e in m["data"]["top10"]
                )
            )
        )
        assert update["data"]["sequence"] > 0
        assert update["data"]["timestamp"].endswith("Z")
        entry = next(e for e in update["data"]["top10"] if e["userId"] == player.user_id)
        assert set(entry) == {"rank", "userId", "username", "score"}
        assert entry["username"] == player.display_name
    finally:
        await viewer.close()

    board = await api.http.get("/api/leaderboard")
    assert board.status_code == 200
    data = board.json()["data"]
    assert any(e["userId"] == player.user_id for e in data["top10"])
    assert data["lastUpdated"].endswith("Z")

    rank = await api.http.get(f"/api/leaderboard/user/{player.user_id}", headers=player.auth)
    assert rank.status_code == 200, rank.text
    mine = rank.json()["data"]
    assert mine["userId"] == player.user_id
    assert mine["score"] == 10
    assert mine["rank"] >= 1
    assert mine["inTop10"] is (mine["rank"] <= 10)
    assert set(mine) == {
        "userId",
        "username",
        "rank",
        "score",
        "inTop10",
        "distanceFromTop10",
        "totalUsers",
        "percentile",
        "tier",
    }


async def test_leaderboard_user_rank_needs_a_token(shared_stack: Stack, api: Api) -> None:
    player = await api.register()
    reply = await api.http.get(f"/api/leaderboard/user/{player.user_id}")
    assert reply.status_code == 401
    assert reply.json() == {
        "success": False,
        "error": "a bearer token is required",
        "code": "UNAUTHENTICATED",
    }
