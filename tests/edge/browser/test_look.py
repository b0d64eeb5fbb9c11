"""How the page looks and reads: a full board with ties at desktop and phone width (saved as
screenshots under .artifacts/browser/), an axe-core audit, animated moves, announcements, and
no request leaving the edge."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import Browser, Page, expect

from tests.edge.browser.conftest import DESKTOP, PHONE, StackFactory, Watched, screenshot, watch
from tests.support.clients import Api, Player
from tests.support.stack import Stack

pytestmark = pytest.mark.browser

NAMES = [
    "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia",
    "Dennis", "Frances", "Edsger", "Hedy",
]  # fmt: skip
# Quick actions and their points: subsets give distinct totals; two players share one (a tie).
QUICK = {"share-replay": 5, "daily-login": 10, "win-match": 25, "complete-quest": 60}


@pytest.fixture(scope="module")
async def full_board(stack_factory: StackFactory) -> AsyncIterator[tuple[Stack, list[Player]]]:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        api = Api(stack.edge_url)
        # Subsets of the quick actions, largest total first: 100, 95, 90, 85, 75, ... 15.
        subsets = sorted(
            (s for n in (4, 3, 2) for s in itertools.combinations(QUICK, n)),
            key=lambda s: -sum(QUICK[a] for a in s),
        )
        players = []
        try:
            for index, name in enumerate(NAMES):
                player = await _register(api, name)
                # A tie: the 3rd and 4th player do the same actions (90 points each).
                chosen = subsets[index if index < 3 else index - 1]
                for action in chosen:
                    reply = await api.complete(player, action)
                    assert reply.status_code == 200, reply.text
                players.append(player)
        finally:
            await api.close()
        yield stack, players


async def _register(api: Api, name: str) -> Player:
    username = f"{name.lower()}{secrets.token_hex(3)}"
    reply = await api.http.post(
        "/api/auth/register",
        json={"username": username, "password": "correct horse battery", "displayName": name},
    )
    assert reply.status_code == 201, reply.text
    data = reply.json()["data"]
    return Player(data["user"]["userId"], username, name, data["accessToken"], data["refreshToken"])


async def _open(browser: Browser, url: str, **options: Any) -> tuple[Watched, Any]:
    context = await browser.new_context(**options)
    watched = await watch(context)
    await watched.page.goto(url)
    await expect(watched.page.locator("#status")).to_have_attribute("data-status", "live")
    await expect(watched.page.locator(".sb-row")).to_have_count(10)
    return watched, context


async def _sign_in(page: Page, username: str) -> None:
    await page.locator("#login-username").fill(username)
    await page.locator("#login-password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#me")).to_be_visible()
    await expect(page.locator("#card-total")).not_to_have_text("\u2013")


async def _audit(page: Page) -> list[str]:
    results = await Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
    ]


async def test_full_board_with_ties_at_desktop_and_phone_width(
    full_board: tuple[Stack, list[Player]], browser: Browser
) -> None:
    stack, players = full_board
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        watched, context = await _open(
            browser, stack.edge_url, viewport=viewport, is_mobile=name == "phone"
        )
        try:
            page = watched.page
            rows = page.locator(".sb-row")
            ranks = [await r.get_attribute("data-rank") for r in await rows.all()]
            # Standard competition ranking: the tie shares 3rd, and the next is 5th.
            scores = [await r.get_attribute("data-score") for r in await rows.all()]
            assert scores == ["100", "95", "90", "90", "85", "75", "70", "65", "40", "35"]
            assert ranks == ["1", "2", "3", "3", "5", "6", "7", "8", "9", "10"]
            tied = page.locator(".sb-row.sb-tied")
            await expect(tied).to_have_count(2)
            await expect(tied.locator(".sb-tie")).to_have_text(["tie", "tie"])
            await expect(rows.first.locator(".sb-name")).to_have_text("Ada")
            await expect(rows.first.locator(".sb-score")).to_have_text("100 points")

            # The 12th player signs in: outside the top 10, the card says how far it is.
            await _sign_in(page, players[-1].username)
            await expect(page.locator("#card-rank")).to_have_text("12th")
            await expect(page.locator("#card-total")).to_have_text("12")
            tenth = int(await rows.nth(9).get_attribute("data-score") or 0)
            mine = int((await page.locator("#card-score").inner_text()).replace(",", ""))
            await expect(page.locator("#card-distance")).to_have_text(str(tenth + 1 - mine))

            await page.keyboard.press("Escape")  # dismiss the welcome message
            await expect(page.locator("#notice")).to_be_hidden()
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{name}: the page scrolls sideways ({width}px)"
            await screenshot(page, f"board-{name}")
            assert await _audit(page) == []
            assert watched.problems() == []
        finally:
            await context.close()


async def test_dark_scheme_reads_well(
    full_board: tuple[Stack, list[Player]], browser: Browser
) -> None:
    stack, _ = full_board
    watched, context = await _open(browser, stack.edge_url, viewport=DESKTOP, color_scheme="dark")
    try:
        await screenshot(watched.page, "board-desktop-dark")
        assert await _audit(watched.page) == []
    finally:
        await context.close()


async def test_moves_animate_and_are_announced_and_nothing_leaves_the_edge(
    full_board: tuple[Stack, list[Player]], browser: Browser
) -> None:
    stack, players = full_board
    context = await browser.new_context(viewport=DESKTOP)
    try:
        # Record every row animation the page starts (FLIP moves use Element.animate).
        await context.add_init_script(
            "window.__moves = [];"
            "const animate = Element.prototype.animate;"
            "Element.prototype.animate = function (frames, options) {"
            "  if (this.classList && this.classList.contains('sb-row'))"
            "    window.__moves.push({user: this.dataset.userId, from: frames[0].transform});"
            "  return animate.call(this, frames, options);"
            "};"
        )
        watched = await watch(context)
        page = watched.page
        await page.goto(stack.edge_url)
        await expect(page.locator(".sb-row")).to_have_count(10)
        climber = players[9]  # 10th with 35 points; defeating the boss (+200) makes it leader
        api = Api(stack.edge_url)
        try:
            start = await api.http.post(
                "/api/actions/start", json={"actionId": "defeat-boss"}, headers=climber.auth
            )
            assert start.status_code == 200, start.text
            ticket = start.json()["data"]["ticket"]
            await page.wait_for_timeout(5_500)  # the boss fight's minimum duration
            reply = await api.complete(climber, "defeat-boss", ticket=ticket)
            assert reply.status_code == 200, reply.text
        finally:
            await api.close()

        first = page.locator(".sb-row").first
        await expect(first).to_have_attribute("data-user-id", climber.user_id)
        await expect(first.locator(".sb-move")).to_have_text("▲9")
        await expect(first.locator(".sb-delta")).to_have_text("+200")
        moves = await page.evaluate("window.__moves")
        assert any(m["user"] == climber.user_id and "translateY(" in m["from"] for m in moves)
        # Everyone the climber passed moved down one row, animated as well.
        assert len({m["user"] for m in moves}) >= 9
        announcer = page.locator(".sb-board [aria-live=polite]")
        await expect(announcer).to_contain_text(f"{climber.display_name} takes 1st place.")

        origin = stack.edge_url.replace("http://", "")
        outside = [u for u in watched.urls if origin not in u and not u.startswith("data:")]
        assert outside == []
        assert watched.problems() == []
    finally:
        await context.close()
