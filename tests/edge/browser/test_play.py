"""Playing through the page: register, complete actions, watch the board from another browser."""

from __future__ import annotations

import secrets

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.edge.browser.conftest import DESKTOP, StackFactory, screenshot, watch
from tests.support.stack import Stack

pytestmark = pytest.mark.browser


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


async def register(
    page: Page, username: str, display: str, password: str = "correct horse"
) -> None:
    await page.get_by_role("tab", name="Register").click()
    await page.get_by_label("Username").and_(page.locator("#register-username")).fill(username)
    await page.locator("#register-display").fill(display)
    await page.locator("#register-password").fill(password)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#me-title")).to_have_text(display)


async def test_register_complete_and_another_browser_sees_it(
    live_stack: Stack, browser: Browser, context: BrowserContext
) -> None:
    other = await browser.new_context(viewport=DESKTOP)
    try:
        watcher = await watch(other)
        await watcher.page.goto(live_stack.edge_url)
        await expect(watcher.page.locator("#status")).to_have_attribute("data-status", "live")
        await watcher.page.evaluate("window.__sameDocument = true")

        player = await watch(context)
        page = player.page
        await page.goto(live_stack.edge_url)
        await expect(page.locator("#status")).to_have_attribute("data-status", "live")
        display = f"Ada {secrets.token_hex(2)}"
        await register(page, f"ada{secrets.token_hex(4)}", display)
        await expect(page.locator("#card-note")).to_contain_text("Complete an action")

        await page.locator('li[data-action-id="daily-login"] button').click()
        await expect(page.locator("#notice")).to_contain_text("+10 points")
        mine = page.locator(".sb-row.sb-me")
        await expect(mine).to_contain_text(display)
        await expect(mine.locator(".sb-score")).to_have_text("10 points")
        rank = await mine.get_attribute("data-rank")
        await expect(page.locator("#card-score")).to_have_text("10")
        await expect(page.locator("#card-rank")).to_have_text(ordinal(int(rank or 0)))
        await expect(page.locator('li[data-action-id="daily-login"]')).to_have_attribute(
            "data-state", "done"
        )

        seen = watcher.page.locator(".sb-row", has_text=display)
        await expect(seen.locator(".sb-score")).to_have_text("10 points")
        assert await watcher.page.evaluate("window.__sameDocument === true")
        await screenshot(page, "play-desktop")
        assert player.problems() == []
        assert watcher.problems() == []
    finally:
        await other.close()


async def test_timed_action_start_then_claim(live_stack: Stack, context: BrowserContext) -> None:
    watched = await watch(context)
    page = watched.page
    await page.goto(live_stack.edge_url)
    await register(page, f"boss{secrets.token_hex(4)}", "Boss Slayer")
    boss = page.locator('li[data-action-id="defeat-boss"]')
    await boss.get_by_role("button", name="Start").click()
    await expect(boss).to_have_attribute("data-state", "running")
    await expect(boss.locator("button")).to_be_disabled()
    await expect(boss.locator("button")).to_contain_text("In progress")
    # The ticket's minimum duration (5 s) passes on the server's clock; the page then offers
    # the claim.
    await expect(boss).to_have_attribute("data-state", "claim", timeout=15_000)
    await boss.get_by_role("button", name="Claim +200").click()
    await expect(page.locator("#notice")).to_contain_text("+200 points")
    await expect(boss).to_have_attribute("data-state", "done")
    await expect(page.locator("#card-score")).to_have_text("200")
    await expect(page.locator(".sb-row.sb-me .sb-score")).to_have_text("200 points")
    assert watched.problems() == []


async def test_already_done_and_cooldown_errors_from_stale_tabs(
    live_stack: Stack, context: BrowserContext
) -> None:
    first = await watch(context)
    await first.page.goto(live_stack.edge_url)
    display = f"Tabs {secrets.token_hex(2)}"
    await register(first.page, f"tabs{secrets.token_hex(4)}", display)
    # Two more tabs of the same browser restore the session from the refresh cookie; their
    # catalogs go stale when the first tab plays.
    stale = []
    for _ in range(2):
        tab = await watch(context)
        await tab.page.goto(live_stack.edge_url)
        await expect(tab.page.locator("#me-title")).to_have_text(display)
        await expect(tab.page.locator("#actions li")).to_have_count(5)
        stale.append(tab)
    for action in ("daily-login", "win-match"):
        await first.page.locator(f'li[data-action-id="{action}"] button').click()
        await expect(first.page.locator(f'li[data-action-id="{action}"]')).not_to_have_attribute(
            "data-state", "ready"
        )
    # The first tab shows what it did: done today, and the cooldown it started.
    await expect(first.page.locator('li[data-action-id="daily-login"]')).to_have_attribute(
        "data-state", "done"
    )
    await expect(first.page.locator('li[data-action-id="win-match"]')).to_have_attribute(
        "data-state", "cooldown"
    )

    login = stale[0].page.locator('li[data-action-id="daily-login"]')
    await expect(login).to_have_attribute("data-state", "ready")
    await login.locator("button").click()
    await expect(stale[0].page.get_by_role("alert")).to_have_text(
        "Already done today: “Daily login” counts once a day. Come back tomorrow!"
    )
    await expect(login).to_have_attribute("data-state", "done")

    match = stale[1].page.locator('li[data-action-id="win-match"]')
    await expect(match).to_have_attribute("data-state", "ready")
    await match.locator("button").click()
    await expect(stale[1].page.get_by_role("alert")).to_contain_text(
        "“Win a match” is cooling down. Ready again in"
    )
    await expect(match).to_have_attribute("data-state", "cooldown")
    await expect(match.locator("button")).to_contain_text("Ready in 0:")
    # The refusals changed nothing: the score is the first tab's two completions.
    for tab in stale:
        await expect(tab.page.locator("#card-score")).to_have_text("35")
    for tab in (first, *stale):
        assert tab.problems() == []


async def test_rate_limited_action_is_explained(
    stack_factory: StackFactory, context: BrowserContext
) -> None:
    async with stack_factory(
        edge={"actions_per_minute": 2}, websocket={"allow_anonymous": True}
    ) as stack:
        watched = await watch(context)
        page = watched.page
        await page.goto(stack.edge_url)
        await register(page, f"fast{secrets.token_hex(4)}", "Fast Fingers")
        for action in ("daily-login", "share-replay"):
            await page.locator(f'li[data-action-id="{action}"] button').click()
            await expect(page.locator(f'li[data-action-id="{action}"]')).to_have_attribute(
                "data-state", "done"
            )
        await page.locator('li[data-action-id="win-match"] button').click()
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text(
            "Slow down! You have completed too many actions in the last minute. Try again in"
        )
        match = page.locator('li[data-action-id="win-match"]')
        await expect(match).to_have_attribute("data-state", "limited")
        await expect(match.locator("button")).to_be_disabled()
        await expect(page.locator("#card-score")).to_have_text("15")
        # The refused request changed nothing: two ledger rows, and the total is their sum.
        async with stack.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*), sum(points) FROM user_actions")
            assert await cur.fetchone() == (2, 15)
        assert watched.problems() == []


async def test_keyboard_only_sign_up_and_play(live_stack: Stack, context: BrowserContext) -> None:
    watched = await watch(context)
    page = watched.page
    await page.goto(live_stack.edge_url)
    await expect(page.locator("#status")).to_have_attribute("data-status", "live")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to the leaderboard")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#board-title")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("tab", name="Sign in")).to_be_focused()
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_role("tab", name="Register")).to_be_focused()
    await expect(page.get_by_role("tab", name="Register")).to_have_attribute(
        "aria-selected", "true"
    )
    await page.keyboard.press("Tab")
    await expect(page.locator("#register-username")).to_be_focused()
    await page.keyboard.type(f"keys{secrets.token_hex(4)}")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Keyboard Kid")
    await page.keyboard.press("Tab")
    await page.keyboard.type("long enough password")
    await page.keyboard.press("Enter")
    await expect(page.locator("#me-title")).to_be_focused()
    await expect(page.locator("#me-title")).to_have_text("Keyboard Kid")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Sign out")).to_be_focused()
    # A keyboard user tabs on once the actions are there (they load after sign-in).
    first_action = page.locator("#actions li button").first
    await expect(first_action).to_be_enabled()
    await page.keyboard.press("Tab")
    await expect(first_action).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status").filter(has_text="points for")).to_be_visible()
    await expect(page.locator(".sb-row.sb-me")).to_be_visible()
    assert watched.problems() == []
