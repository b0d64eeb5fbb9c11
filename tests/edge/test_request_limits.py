"""Per-caller limits beyond completions (issue 16, item 7): POST /api/actions/start and POST
/api/ws-ticket per user, POST /api/auth/refresh per client address; a refusal is 429 with
Retry-After and the JSON envelope, and another caller keeps its own budget."""

from __future__ import annotations

import httpx

from tests.conftest import StackFactory
from tests.support.clients import Api


def _limited(reply: httpx.Response) -> None:
    assert reply.status_code == 429, reply.text
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["success"] is False
    assert reply.json()["code"] == "RATE_LIMITED"


async def test_start_ws_ticket_and_refresh_are_limited(stack_factory: StackFactory) -> None:
    limits = {"starts_per_minute": 2, "ws_tickets_per_minute": 2, "refreshes_per_minute": 2}
    async with stack_factory(edge=limits) as stack, Api(stack.edge_url) as api:
        player, other = await api.register(), await api.register()

        for _ in range(2):
            reply = await api.http.post(
                "/api/actions/start", json={"actionId": "defeat-boss"}, headers=player.auth
            )
            assert reply.status_code == 200, reply.text
        _limited(
            await api.http.post(
                "/api/actions/start", json={"actionId": "defeat-boss"}, headers=player.auth
            )
        )
        reply = await api.http.post(
            "/api/actions/start", json={"actionId": "defeat-boss"}, headers=other.auth
        )
        assert reply.status_code == 200, reply.text

        for _ in range(2):
            reply = await api.http.post("/api/ws-ticket", headers=player.auth)
            assert reply.status_code == 200, reply.text
        _limited(await api.http.post("/api/ws-ticket", headers=player.auth))
        reply = await api.http.post("/api/ws-ticket", headers=other.auth)
        assert reply.status_code == 200, reply.text

        token = player.refresh_token
        for _ in range(2):
            reply = await api.http.post("/api/auth/refresh", json={"refreshToken": token})
            assert reply.status_code == 200, reply.text
            token = reply.json()["data"]["refreshToken"]
        # Per address: the other player's refresh from the same address is refused too.
        _limited(
            await api.http.post("/api/auth/refresh", json={"refreshToken": other.refresh_token})
        )
