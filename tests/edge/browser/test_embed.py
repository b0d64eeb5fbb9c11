"""The embeddable client on someone else's page: Scoreboard.mount() and Scoreboard.connect()
as the README documents them, same-origin and from another origin."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from playwright.async_api import BrowserContext, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.edge.browser.conftest import StackFactory, watch
from tests.support.clients import Api

pytestmark = pytest.mark.browser


class HostSite:
    """Another origin on this machine (its own port) serving a page that embeds the board."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.origin = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.edge = ""

    async def _page(self, request: Request) -> HTMLResponse:
        return HTMLResponse(host_page(self.edge))

    @asynccontextmanager
    async def serving(self, edge: str) -> AsyncIterator[str]:
        self.edge = edge
        app = Starlette(routes=[Route("/scores.html", self._page)])
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[self.sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            yield f"{self.origin}/scores.html"
        finally:
            server.should_exit = True
            await task


def host_page(edge: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A game's site</title>
<link rel="stylesheet" href="{edge}/static/scoreboard-client.css"></head>
<body><main><h1>Our champions</h1><div id="board"></div><p id="state"></p></main>
<script src="{edge}/static/scoreboard-client.js"></script>
<script>
  window.updates = [];
  window.polled = [];
  window.statuses = [];
  window.view = Scoreboard.mount(document.getElementById("board"), {{
    url: "{edge}",
    caption: "Champions",
    onStatus: function (status) {{
      window.statuses.push(status);
      document.getElementById("state").textContent = status;
    }},
    onUpdate: function (board) {{ window.updates.push(board); }},
  }});
  // A second, HTTP-only connection: what a page gets where WebSockets are not an option.
  window.poller = Scoreboard.connect({{
    url: "{edge}",
    webSocket: false,
    pollIntervalMs: 1000,
    onUpdate: function (board) {{ window.polled.push(board); }},
  }});
</script></body></html>"""


async def test_embedded_board_on_another_origin(
    stack_factory: StackFactory, context: BrowserContext
) -> None:
    site = HostSite()
    async with (
        stack_factory(
            edge={"cors_origins": (site.origin,)},
            websocket={"allow_anonymous": True, "origins": (site.origin,)},
        ) as stack,
        site.serving(stack.edge_url) as url,
    ):
        api = Api(stack.edge_url)
        try:
            first = await api.register()
            assert (await api.complete(first, "daily-login")).status_code == 200
            watched = await watch(context)
            page = watched.page
            await page.goto(url)
            await expect(page.locator("#state")).to_have_text("live")
            board = page.get_by_role("list", name="Champions")
            await expect(board.locator(".sb-row")).to_have_count(1)
            await expect(board.locator(".sb-row .sb-name")).to_have_text(first.display_name)

            second = await api.register()
            assert (await api.complete(second, "win-match")).status_code == 200
            await expect(board.locator(".sb-row")).to_have_count(2)
            await expect(board.locator(".sb-row").first).to_have_attribute(
                "data-user-id", second.user_id
            )
            await expect(board.locator(".sb-row").first.locator(".sb-move")).to_have_text("new")
            updates = await page.evaluate("window.updates")
            assert updates[-1]["source"] == "ws"
            assert [e["userId"] for e in updates[-1]["top10"]] == [second.user_id, first.user_id]
            assert all(a["sequence"] < b["sequence"] for a, b in itertools.pairwise(updates))
            # The HTTP-only connection sees the same board through CORS.
            await page.wait_for_function(
                "window.polled.length > 0 && window.polled.at(-1).top10.length === 2"
            )
            assert (await page.evaluate("window.polled.at(-1).source")) == "http"

            await page.evaluate("window.view.destroy(); window.poller.close()")
            assert (await page.evaluate("window.statuses.at(-1)")) == "closed"
            await expect(page.locator("#board .sb-row")).to_have_count(0)
            assert watched.problems() == []
        finally:
            await api.close()


async def test_embedded_board_is_refused_by_an_origin_not_allowed(
    stack_factory: StackFactory, context: BrowserContext
) -> None:
    site = HostSite()
    async with (
        stack_factory(websocket={"allow_anonymous": True}) as stack,
        site.serving(stack.edge_url) as url,
    ):
        watched = await watch(context)
        page = watched.page
        await page.goto(url)
        # The edge closes the socket with 4403; the client stops asking and polls, which CORS
        # refuses too, so it keeps saying it is reconnecting rather than pretending to be live.
        await page.wait_for_function("window.statuses.includes('reconnecting')")
        assert "live" not in await page.evaluate("window.statuses")
        await expect(page.locator("#board .sb-row")).to_have_count(0)
