"""Tokens in the browser: in memory only, refreshed through the httpOnly cookie before they
expire and on reload, never in a URL or in storage; signing out ends the session."""

from __future__ import annotations

import secrets

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.edge.browser.conftest import StackFactory, Watched, watch
from tests.edge.browser.test_play import register
from tests.support.stack import Stack

pytestmark = pytest.mark.browser


async def _storage(page: Page) -> str:
    result: str = await page.evaluate(
        "JSON.stringify({local: {...localStorage}, session: {...sessionStorage}, "
        "cookie: document.cookie})"
    )
    return result


def _assert_no_token_in_urls(watched: Watched) -> None:
    for url in watched.urls:
        assert "token=" not in url, url
        assert "eyJ" not in url, url  # a JWT's header, base64url-encoded


async def test_reload_keeps_the_session_without_storing_tokens(
    live_stack: Stack, context: BrowserContext
) -> None:
    watched = await watch(context)
    page = watched.page
    await page.goto(live_stack.edge_url)
    display = f"Reload {secrets.token_hex(2)}"
    await register(page, f"reload{secrets.token_hex(4)}", display)
    await page.locator('li[data-action-id="share-replay"] button').click()
    await expect(page.locator("#card-score")).to_have_text("5")

    await page.reload()
    await expect(page.locator("#me-title")).to_have_text(display)
    await expect(page.locator("#card-score")).to_have_text("5")
    await expect(page.locator('li[data-action-id="share-replay"]')).to_have_attribute(
        "data-state", "done"
    )
    await expect(page.locator("#status")).to_have_attribute("data-status", "live")

    stored = await _storage(page)
    assert "eyJ" not in stored  # no access token in localStorage, sessionStorage or cookies
    cookies = await context.cookies()
    refresh = [c for c in cookies if c["name"] == "sb_refresh"]
    assert len(refresh) == 1
    assert refresh[0]["httpOnly"] is True
    assert refresh[0]["sameSite"] == "Strict"
    assert refresh[0]["path"] == "/api/auth"
    assert refresh[0]["value"] not in stored
    _assert_no_token_in_urls(watched)
    assert watched.problems() == []


async def test_sign_out_ends_the_session_everywhere(
    live_stack: Stack, context: BrowserContext
) -> None:
    first = await watch(context)
    await first.page.goto(live_stack.edge_url)
    display = f"Leaving {secrets.token_hex(2)}"
    await register(first.page, f"bye{secrets.token_hex(4)}", display)
    second = await watch(context)
    await second.page.goto(live_stack.edge_url)
    await expect(second.page.locator("#me-title")).to_have_text(display)

    await first.page.get_by_role("button", name="Sign out").click()
    await expect(first.page.get_by_role("status").filter(has_text="signed out")).to_be_visible()
    await expect(first.page.locator("#auth")).to_be_visible()
    await expect(first.page.locator("#me")).to_be_hidden()
    # The other tab hears of it and signs out too.
    await expect(second.page.locator("#auth")).to_be_visible()
    await expect(second.page.locator("#me")).to_be_hidden()
    assert [c for c in await context.cookies() if c["name"] == "sb_refresh"] == []

    await first.page.reload()
    await expect(first.page.locator("#auth")).to_be_visible()
    await expect(first.page.locator("#status")).to_have_attribute("data-status", "live")
    refused = await first.page.request.post(
        live_stack.edge_url + "/api/auth/refresh", headers={"X-Requested-With": "scoreboard"}
    )
    assert refused.status == 401
    assert first.problems() == []
    assert second.problems() == []


async def test_access_token_is_refreshed_before_it_expires(
    stack_factory: StackFactory, context: BrowserContext
) -> None:
    async with stack_factory(
        auth={"access_token_seconds": 8}, websocket={"allow_anonymous": True}
    ) as stack:
        watched = await watch(context)
        page = watched.page
        refreshes: list[int] = []
        page.on(
            "response",
            lambda r: refreshes.append(r.status) if r.url.endswith("/api/auth/refresh") else None,
        )
        await page.goto(stack.edge_url)
        await register(page, f"fresh{secrets.token_hex(4)}", "Fresh Token")
        await expect(page.locator("#status")).to_have_attribute("data-status", "live")
        sockets = sum("/ws" in u for u in watched.urls)

        # The page refreshes at 80% of the lifetime; the socket opened with the first token is
        # closed by the edge when that token expires (4440) and reopens with a fresh ticket.
        async with page.expect_response("**/api/auth/refresh", timeout=20_000) as waited:
            pass
        assert (await waited.value).status == 200
        await page.wait_for_event(
            "websocket", predicate=lambda ws: "ticket=" in ws.url, timeout=20_000
        )
        await expect(page.locator("#status")).to_have_attribute("data-status", "live")
        assert sum("/ws" in u for u in watched.urls) > sockets

        # Past the first token's lifetime, playing just works.
        await page.locator('li[data-action-id="daily-login"] button').click()
        await expect(page.locator("#notice")).to_contain_text("+10 points")
        assert refreshes and all(status == 200 for status in refreshes)
        _assert_no_token_in_urls(watched)
        assert watched.problems() == []
