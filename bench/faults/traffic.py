"""The load a scenario runs under: players completing a repeatable action through the edge at a
fixed rate (open loop), each request with an id of its own (X-Request-ID, recorded in the
ledger row it writes) and a deadline. Every request ends as exactly one outcome: "ok" (the
acknowledgement), the HTTP status and the envelope's code ("503 UNAVAILABLE"), RESET (the connection
refused or cut: the edge process itself was gone) or HANG (no answer within the deadline)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

OK = "ok"
HANG = "HANG"
RESET = "RESET"


@dataclass(frozen=True)
class Player:
    user_id: str
    token: str
    refresh_token: str = ""


@dataclass
class Sent:
    user_id: str
    outcome: str = ""
    seconds: float = 0.0


@dataclass
class TrafficResult:
    requests: dict[str, Sent] = field(default_factory=dict)
    # Calls that could not start on time because max_in_flight calls were pending.
    throttled: int = 0

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(sent.outcome for sent in self.requests.values())

    @property
    def answered(self) -> int:
        return sum(1 for s in self.requests.values() if s.outcome not in (HANG, ""))

    def acked(self) -> set[str]:
        return {rid for rid, sent in self.requests.items() if sent.outcome == OK}


async def register(client: httpx.AsyncClient, name: str) -> Player:
    """A new account through the edge, signed in."""
    reply = await client.post(
        "/api/auth/register",
        json={
            "username": f"{name}{secrets.token_hex(4)}",
            "password": secrets.token_urlsafe(16),
            "displayName": name,
        },
        timeout=30,
    )
    reply.raise_for_status()
    data = reply.json()["data"]
    return Player(data["user"]["userId"], data["accessToken"], data["refreshToken"])


async def complete(
    client: httpx.AsyncClient, player: Player, action_id: str, request_id: str, deadline: float
) -> tuple[str, dict[str, object]]:
    """One completion; (outcome, data of a success)."""
    try:
        reply = await asyncio.wait_for(
            client.post(
                "/api/actions/complete",
                json={"actionId": action_id},
                headers={"Authorization": f"Bearer {player.token}", "X-Request-ID": request_id},
                timeout=deadline + 5,
            ),
            deadline,
        )
    except TimeoutError:
        return HANG, {}
    except httpx.TransportError:
        return RESET, {}
    if reply.status_code == 200:
        data: dict[str, object] = reply.json()["data"]
        return OK, data
    try:
        code = str(reply.json().get("code") or "")
    except ValueError:
        code = ""
    return f"{reply.status_code} {code}".strip(), {}


async def run_load(
    client: httpx.AsyncClient,
    players: list[Player],
    action_id: str,
    *,
    tag: str,
    rate: float,
    deadline: float,
    stop: asyncio.Event,
    max_in_flight: int = 256,
) -> TrafficResult:
    """Until `stop` is set: start `rate` completions a second, round-robin over the players,
    whatever the answers (open loop); then wait for every call to end (each ends by its
    deadline)."""
    result = TrafficResult()
    slots = asyncio.Semaphore(max_in_flight)
    pending: set[asyncio.Task[None]] = set()

    async def one(rid: str, player: Player) -> None:
        started = time.monotonic()
        try:
            outcome, _ = await complete(client, player, action_id, rid, deadline)
        except Exception as exc:  # a load generator reports failures, it does not stop
            outcome = type(exc).__name__
        finally:
            slots.release()
        sent = result.requests[rid]
        sent.outcome = outcome
        sent.seconds = time.monotonic() - started

    start = time.monotonic()
    n = 0
    while not stop.is_set():
        due = start + n / rate
        if due > time.monotonic():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), due - time.monotonic())
            if stop.is_set():
                break
        if slots.locked():
            result.throttled += 1
        await slots.acquire()
        player = players[n % len(players)]
        rid = f"{tag}-{n}"
        result.requests[rid] = Sent(player.user_id)
        task = asyncio.create_task(one(rid, player))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    if pending:
        await asyncio.wait(pending)
    return result
