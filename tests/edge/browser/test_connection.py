"""The connection as a viewer lives it: edge restarts, refused or broken WebSockets, going
offline. The board must come back current every time."""

from __future__ import annotations

import secrets

import pytest
from playwright.async_api import BrowserContext, WebSocketRoute, expect

from common.grpc_client import call_metadata
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc
from tests.edge.browser.conftest import StackFactory, watch
from tests.support.clients import Api, service_token
from tests.support.stack import Stack

pytestmark = pytest.mark.browser


async def _complete_over_grpc(stack: Stack, user_id: str, action_id: str) -> int:
    """What a game server does: the gRPC path, which needs no edge."""
    import grpc

    token = await service_token(stack.address("auth"), "game-server", stack.game_secret)
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        reply = await stub.CompleteAction(
            score_service_pb2.CompleteActionRequest(
                action_id=action_id, user_id=user_id, idempotency_key=secrets.token_hex(8)
            ),
            metadata=call_metadata(token),
            timeout=10,
        )
    return reply.new_score


async def test_edge_restart_shows_reconnecting_then_live_with_the_current_board(
    stack_factory: StackFactory, context: BrowserContext
) -> None:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        api = Api(stack.edge_url)
        try:
            player = await api.register()
            assert (await api.complete(player, "daily-login")).status_code == 200
        finally:
            await api.close()
        watched = await watch(context)
        page = watched.page
        await page.goto(stack.edge_url)
        status = page.locator("#status")
        row = page.locator(f'.sb-row[data-user-id="{player.user_id}"]')
        await expect(status).to_have_attribute("data-status", "live")
        await expect(row.locator(".sb-score")).to_have_text("10 points")
        sockets_before = sum("/ws" in u for u in watched.urls)

        await stack.stop_edge()
        await expect(status).to_have_attribute("data-status", "reconnecting")
        await expect(page.locator("#status-text")).to_have_text("Reconnecting…")
        await expect(page.get_by_role("button", name="Retry now")).to_be_visible()
        # The board moves on while the edge is down.
        assert await _complete_over_grpc(stack, player.user_id, "win-match") == 35

        await stack.start_edge()
        await expect(status).to_have_attribute("data-status", "live", timeout=20_000)
        await expect(row.locator(".sb-score")).to_have_text("35 points")
        await expect(page.get_by_role("button", name="Retry now")).to_be_hidden()
        assert sum("/ws" in u for u in watched.urls) > sockets_before
        assert watched.problems() == []


async def test_polls_when_the_edge_refuses_anonymous_sockets_then_goes_live_signed_in(
    stack_factory: StackFactory, context: BrowserContext
) -> None:
    async with stack_factory() as stack:  # SCOREBOARD_WS_ANONYMOUS off: viewers need a ticket
        watched = await watch(context)
        page = watched.page
        await page.goto(stack.edge_url)
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-status", "polling")
        await expect(page.locator("#status-text")).to_contain_text("Live")

        api = Api(stack.edge_url)
        try:
            player = await api.register()
            assert (await api.complete(player, "share-replay")).status_code == 200
        finally:
            await api.close()
        # Polling picks the change up without a reload (every ~5 s).
        row = page.locator(f'.sb-row[data-user-id="{player.user_id}"]')
        await expect(row.locator(".sb-score")).to_have_text("5 points", timeout=20_000)

        await page.get_by_role("tab", name="Register").click()
        await page.locator("#register-username").fill(f"poll{secrets.token_hex(4)}")
        await page.locator("#register-password").fill("correct horse")
        await page.get_by_role("button", name="Create account").click()
        await expect(status).to_have_attribute("data-status", "live")
        # Signed in, the socket is opened with a ticket, never with the token in the URL.
        sockets = [u for u in watched.urls if "/ws" in u]
        assert sockets
        assert all("token=" not in u for u in sockets)
        assert any("ticket=" in u for u in sockets)
        assert watched.problems() == []


async def test_falls_back_to_polling_when_websockets_are_broken(
    live_stack: Stack, context: BrowserContext
) -> None:
    attempts: list[str] = []

    async def broken(ws: WebSocketRoute) -> None:
        # Like a proxy that drops upgrades: every socket dies before it says anything.
        attempts.append(ws.url)
        await ws.close(code=1011, reason="no websockets here")

    watched = await watch(context)
    page = watched.page
    await page.route_web_socket("**/ws**", broken)
    await page.goto(live_stack.edge_url)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-status", "polling", timeout=20_000)
    assert len(attempts) >= 3

    api = Api(live_stack.edge_url)
    try:
        player = await api.register()
        assert (await api.complete(player, "daily-login")).status_code == 200
    finally:
        await api.close()
    row = page.locator(f'.sb-row[data-user-id="{player.user_id}"]')
    await expect(row.locator(".sb-score")).to_have_text("10 points", timeout=20_000)
    assert watched.problems() == []


async def test_offline_then_back_online(live_stack: Stack, context: BrowserContext) -> None:
    watched = await watch(context)
    page = watched.page
    await page.goto(live_stack.edge_url)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-status", "live")
    await context.set_offline(True)
    await expect(status).to_have_attribute("data-status", "offline")
    await expect(page.locator("#status-text")).to_have_text("Offline")

    api = Api(live_stack.edge_url)
    try:
        player = await api.register()
        assert (await api.complete(player, "share-replay")).status_code == 200
    finally:
        await api.close()
    await context.set_offline(False)
    await expect(status).to_have_attribute("data-status", "live", timeout=20_000)
    row = page.locator(f'.sb-row[data-user-id="{player.user_id}"]')
    await expect(row.locator(".sb-score")).to_have_text("5 points")
    assert watched.problems() == []
