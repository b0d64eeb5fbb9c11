"""`scoreboard demo` (make demo): a board that is alive on first run.

Seeds demo players and simulates their activity for a bounded time, entirely through the public
REST API of a running edge (registering, completing actions, the timed boss fight with its
ticket), so every rule applies to it as to anyone: points from the catalog, daily limits,
cooldowns, the rate limit. When nothing answers at the URL and none was given, it starts the
whole stack first (as `make run` does) and leaves it running after the activity until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from common.config import Env

NAMES = (
    "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia", "Dennis", "Frances",
    "Edsger", "Hedy", "Donald", "Katherine", "Tim", "Annie", "Guido", "Mary", "Bjarne", "Joan",
    "Niklaus", "Sophie", "John", "Shafi", "Leslie", "Lynn", "Vint", "Evelyn", "Tony", "Jean",
)  # fmt: skip
# How often the simulation picks each action, relative to the others.
WEIGHTS = {"win-match": 8, "complete-quest": 2, "defeat-boss": 1}
MAX_FAILURES_IN_A_ROW = 10
MAX_PLAYERS = 100
MAX_SECONDS = 3600
Out = Callable[[str], None]


class DemoError(Exception):
    pass


@dataclass
class Action:
    action_id: str
    name: str
    points: int
    daily_limit: int
    cooldown: float
    requires_ticket: bool
    min_duration: float

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Action:
        return cls(
            data["actionId"],
            data["name"],
            int(data["points"]),
            int(data["dailyLimit"]),
            float(data["cooldownSeconds"]),
            bool(data["requiresTicket"]),
            float(data["minDurationSeconds"]),
        )


@dataclass
class DemoPlayer:
    user_id: str
    name: str
    token: str
    remaining: dict[str, int]
    next_at: dict[str, float] = field(default_factory=dict)
    fighting: bool = False

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass
class DemoResult:
    players: list[str] = field(default_factory=list)
    completed: int = 0
    refused: int = 0


def _error(reply: httpx.Response) -> tuple[str, str]:
    try:
        body = reply.json()
        return str(body.get("code", reply.status_code)), str(body.get("error", ""))
    except ValueError:
        return str(reply.status_code), reply.text[:200]


async def _register(
    http: httpx.AsyncClient, name: str, catalog: list[Action], rng: random.Random
) -> DemoPlayer:
    username = f"demo-{name.lower()}-{secrets.token_hex(3)}"
    reply = await http.post(
        "/api/auth/register",
        # A random password nobody keeps: demo players are driven only by this run.
        json={"username": username, "password": secrets.token_urlsafe(18), "displayName": name},
    )
    if reply.status_code != 201:
        code, message = _error(reply)
        raise DemoError(f"could not register {username}: {code} {message}")
    data = reply.json()["data"]
    return DemoPlayer(
        data["user"]["userId"],
        name,
        data["accessToken"],
        {a.action_id: a.daily_limit for a in catalog},
    )


class Simulation:
    def __init__(
        self, http: httpx.AsyncClient, catalog: list[Action], rng: random.Random, out: Out
    ) -> None:
        self.http = http
        self.catalog = {a.action_id: a for a in catalog}
        self.rng = rng
        self.out = out
        self.result = DemoResult()
        self.failures = 0
        self.fights: set[asyncio.Task[None]] = set()

    async def complete(self, player: DemoPlayer, action: Action, ticket: str | None = None) -> bool:
        body: dict[str, str] = {"actionId": action.action_id}
        if ticket:
            body["ticket"] = ticket
        headers = {**player.auth, "Idempotency-Key": f"demo-{secrets.token_hex(12)}"}
        try:
            reply = await self.http.post("/api/actions/complete", json=body, headers=headers)
        except httpx.HTTPError as exc:
            self._failed(f"{player.name}: {action.name}: {exc.__class__.__name__}")
            return False
        now = time.monotonic()
        if reply.status_code == 200:
            data = reply.json()["data"]
            player.remaining[action.action_id] -= 1
            player.next_at[action.action_id] = now + action.cooldown
            self.result.completed += 1
            self.failures = 0
            self.out(
                f"  {player.name:<10} {action.name:<18} +{data['increment']:<4} "
                f"score {data['newScore']:>5}  rank {data['rank']}"
            )
            return True
        code, message = _error(reply)
        self.result.refused += 1
        retry = reply.headers.get("retry-after", "")
        wait = float(retry) if retry.isdigit() else 5.0
        if code == "DAILY_LIMIT_REACHED":
            player.remaining[action.action_id] = 0
        elif code == "COOLDOWN_ACTIVE":
            player.next_at[action.action_id] = now + wait
        elif code == "RATE_LIMITED":
            for other in self.catalog:
                player.next_at[other] = max(player.next_at.get(other, 0.0), now + wait)
        elif reply.status_code >= 500:
            self._failed(f"{player.name}: {action.name}: {reply.status_code} {message}")
        else:
            player.remaining[action.action_id] = 0  # refused for a reason retrying won't fix
            self.out(f"  {player.name}: {action.name} refused: {code} {message}")
        return False

    def _failed(self, what: str) -> None:
        self.failures += 1
        self.out(f"  ! {what}")
        if self.failures >= MAX_FAILURES_IN_A_ROW:
            raise DemoError(f"{self.failures} failures in a row; is the stack healthy?")

    async def fight(self, player: DemoPlayer, action: Action) -> None:
        """A timed action: start it (a single-use ticket), let it last, then claim it."""
        player.fighting = True
        try:
            reply = await self.http.post(
                "/api/actions/start", json={"actionId": action.action_id}, headers=player.auth
            )
            if reply.status_code != 200:
                code, message = _error(reply)
                player.remaining[action.action_id] = 0
                self.out(f"  {player.name}: {action.name} could not start: {code} {message}")
                return
            self.out(f"  {player.name:<10} starts: {action.name.lower()}…")
            await asyncio.sleep(action.min_duration + 0.5)
            await self.complete(player, action, reply.json()["data"]["ticket"])
        except httpx.HTTPError as exc:
            self._failed(f"{player.name}: {action.name}: {exc.__class__.__name__}")
        finally:
            player.fighting = False

    def pick(self, cast: list[DemoPlayer]) -> tuple[DemoPlayer, Action] | None:
        now = time.monotonic()
        choices: list[tuple[DemoPlayer, Action]] = []
        weights: list[int] = []
        for player in cast:
            if player.fighting:
                continue
            for action_id, weight in WEIGHTS.items():
                action = self.catalog.get(action_id)
                if action is None or player.remaining.get(action_id, 0) <= 0:
                    continue
                if player.next_at.get(action_id, 0.0) > now:
                    continue
                choices.append((player, action))
                weights.append(weight)
        if not choices:
            return None
        return self.rng.choices(choices, weights)[0]

    def exhausted(self, cast: list[DemoPlayer]) -> bool:
        return all(
            p.remaining.get(a, 0) <= 0 for p in cast for a in WEIGHTS if a in self.catalog
        ) and not any(p.fighting for p in cast)


async def simulate(
    base_url: str,
    *,
    players: int = 12,
    seconds: float = 120.0,
    seed: int | None = None,
    out: Out = print,
) -> DemoResult:
    """Register `players` demo players, give each a start, then complete actions for them
    for `seconds` (bounded) through the REST API."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        reply = await http.get("/api/actions")
        if reply.status_code != 200:
            raise DemoError(f"GET /api/actions answered {reply.status_code}")
        catalog = [Action.from_api(a) for a in reply.json()["data"]["actions"]]
        sim = Simulation(http, catalog, rng, out)
        names = rng.sample(NAMES, k=min(players, len(NAMES)))
        names += [f"Player {i}" for i in range(len(names) + 1, players + 1)]
        out(f"Seeding {players} demo players at {base_url}")
        cast = [await _register(http, name, catalog, rng) for name in names]
        sim.result.players = [p.user_id for p in cast]
        quick = [a for a in catalog if not a.requires_ticket and a.cooldown == 0]
        for player in cast:
            # Everyone logs in; some do a quick extra, so the board starts varied.
            for action in quick:
                if action.action_id == "daily-login" or rng.random() < 0.5:
                    await sim.complete(player, action)
        if seconds <= 0:
            return sim.result
        out(f"Simulating activity for {seconds:.0f} s (Ctrl-C stops it)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while loop.time() < deadline:
                choice = sim.pick(cast)
                if choice is None:
                    if sim.exhausted(cast):
                        out("Every demo player has used up today's actions.")
                        break
                    await asyncio.sleep(0.5)
                    continue
                player, action = choice
                if action.requires_ticket:
                    task = asyncio.create_task(sim.fight(player, action))
                    sim.fights.add(task)
                    task.add_done_callback(sim.fights.discard)
                else:
                    await sim.complete(player, action)
                await asyncio.sleep(rng.uniform(0.3, 1.2))
        finally:
            for task in list(sim.fights):
                task.cancel()
            for task in list(sim.fights):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        out(f"Demo done: {sim.result.completed} actions completed, {sim.result.refused} refused.")
        return sim.result


async def _reachable(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as http:
        try:
            reply = await http.get(url + "/healthz")
        except httpx.HTTPError:
            return False
        return reply.status_code == 200


async def _simulate_until_signal(url: str, players: int, seconds: float) -> int:
    task = asyncio.create_task(simulate(url, players=players, seconds=seconds))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        print("Demo stopped.")
        return 130
    except (DemoError, httpx.HTTPError) as exc:
        print(f"scoreboard demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def run_demo(
    url: str | None, players: int, seconds: float, environ: dict[str, str] | None = None
) -> int:
    if not 1 <= players <= MAX_PLAYERS or not 0 <= seconds <= MAX_SECONDS:
        print(
            f"scoreboard demo: --players must be 1-{MAX_PLAYERS} and --seconds 0-{MAX_SECONDS}",
            file=sys.stderr,
        )
        return 2
    env = Env(environ)
    default = f"http://{env.text('EDGE_HOST', '127.0.0.1')}:{env.integer('EDGE_PORT', 8000)}"
    target = (url or default).rstrip("/")
    if asyncio.run(_reachable(target)):
        print(f"Using the stack at {target} — open it in a browser to watch.")
        return asyncio.run(_simulate_until_signal(target, players, seconds))
    if url:
        print(f"scoreboard demo: nothing answers at {target}/healthz", file=sys.stderr)
        return 1
    from ops.devstack import start_stack

    print(f"No stack at {target}; starting one as `make run` does…", flush=True)
    try:
        stack = start_stack(environ)
    except (RuntimeError, OSError) as exc:
        print(f"scoreboard demo: {exc}", file=sys.stderr)
        return 1
    try:
        code = asyncio.run(_simulate_until_signal(target, players, seconds))
        if code != 0:
            return code
        print(f"The stack keeps running at {target}. Press Ctrl-C to stop.", flush=True)
        if stack.wait_for_stop() is not None:
            print("a service exited; stopping", file=sys.stderr)
            return 1
        return 0
    finally:
        print("Stopping…", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
