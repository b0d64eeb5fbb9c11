"""Anonymous deep pages (issue 16): without a token, GET /api/leaderboard/entries past the first
page (a request with a pageToken) is limited per client address; the first page (the top 100 at
most) is not, nor is a signed-in caller, and another address keeps its own budget. A refusal is
429 with Retry-After and the JSON envelope."""

from __future__ import annotations

import httpx

from tests.conftest import StackFactory
from tests.support.clients import Api
from tests.support.ranks import place_players

LIMIT = 2


def _client(base_url: str, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=15)


async def _page(
    http: httpx.AsyncClient, token: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    params = {"pageSize": "1", **({"pageToken": token} if token else {})}
    return await http.get("/api/leaderboard/entries", params=params, headers=headers)


async def test_anonymous_pages_past_the_first_are_limited_per_address(
    stack_factory: StackFactory,
) -> None:
    edge = {"anonymous_deep_pages_per_minute": LIMIT}
    async with stack_factory(edge=edge) as stack, Api(stack.edge_url) as api:
        await place_players(stack.redis, stack.keys.board("default"), [50, 40, 30, 20, 10])
        first = await _page(api.http)
        assert first.status_code == 200, first.text
        token = first.json()["data"]["nextPageToken"]
        assert token
        # The first page is free however often it is read.
        for _ in range(LIMIT + 2):
            assert (await _page(api.http)).status_code == 200

        for _ in range(LIMIT):
            reply = await _page(api.http, token)
            assert reply.status_code == 200, reply.text
        refused = await _page(api.http, token)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json() == {
            "success": False,
            "error": refused.json()["error"],
            "code": "RATE_LIMITED",
        }

        # A signed-in caller from the same address is not limited...
        player = await api.register()
        for _ in range(LIMIT + 1):
            assert (await _page(api.http, token, player.auth)).status_code == 200
        # ...and another address has its own budget.
        async with _client(stack.edge_url, "127.0.0.2") as other:
            assert (await _page(other, token)).status_code == 200
