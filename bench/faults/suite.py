"""One run of the fault suite: players, actions and viewers set up once on one stack, then each
scenario in turn: load starts, the fault comes and goes, recovery is timed with a probe, the
load stops, and the invariants are checked before the next scenario starts (so each one also
starts from a system that recovered from the one before)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import httpx
import redis.asyncio as aioredis

from bench.faults.checks import Ranking, count_ledger, holds, on_board, stray_rows
from bench.faults.rig import Rig
from bench.faults.scenarios import Scenario
from bench.faults.traffic import HANG, OK, Player, TrafficResult, complete, register, run_load
from bench.faults.viewers import Viewers
from bench.invariants import ledger_mismatches, wait_settled
from common.config import DEFAULT_BOARD
from common.grpc_client import call_metadata, open_channel
from common.redis_keys import Keys
from ops.devstack import save_service_account
from scoreboard.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

LOAD_ACTION = "fault-load"
PROBE_ACTION = "fault-probe"
ADMIN_CLIENT = "fault-suite"
ADMIN_SCOPES = "admin scores:write leaderboard:read"


@dataclass(frozen=True)
class Options:
    rate: float = 20.0  # completions per second
    players: int = 20
    viewers: int = 20
    # How long Redis stays paused (and the link slow, then black-holed); a killed service
    # stays down.
    pause_seconds: float = 10.0
    down_seconds: float = 1.0
    lead_seconds: float = 3.0  # load before the fault
    tail_seconds: float = 5.0  # load after the fault, at least
    deadline_seconds: float = 8.0  # the edge's upstream deadline is 5 s
    recovery_cap_seconds: float = 90.0
    settle_seconds: float = 60.0


@dataclass
class Outcome:
    scenario: str
    how: str
    requests: int = 0
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    doubled: int = 0
    landed_unacked: int = 0
    recovery_seconds: float | None = None
    ledger_equals_totals: bool = False
    redis_equals_postgres: bool = False
    viewers_on_final_board: int = 0
    viewers: int = 0
    revoked_refused: bool = True
    max_latency_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations


class Suite:
    def __init__(self, rig: Rig, options: Options) -> None:
        self.rig = rig
        self.options = options
        env = rig.stack.env
        self._client = httpx.AsyncClient(
            base_url=rig.stack.edge_url,
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
        )
        self._channels = [open_channel(env[f"SCOREBOARD_{n}_ADDR"]) for n in ("AUTH", "SCORE")]
        self._leaderboard = open_channel(env["SCOREBOARD_LEADERBOARD_ADDR"])
        self._keys = Keys(env.get("SCOREBOARD_KEY_PREFIX", "sb:"))
        self.viewers = Viewers(rig.ws_url, options.viewers)
        self.ranking: Ranking | None = None
        self.players: list[Player] = []
        self.probe: Player | None = None
        # Tokens whose logout was acknowledged: refused from then on.
        self.revoked: list[str] = []
        self._fresh_revocations: list[str] = []
        self._strays = 0

    # ---------------------------------------------------------------- setup

    async def setup(self) -> None:
        token = await self._admin_token()
        self.ranking = Ranking(self._leaderboard, token)
        score = score_service_pb2_grpc.ScoreServiceStub(self._channels[1])
        for action_id, points, about in (
            (LOAD_ACTION, 1, "The load: one point, repeatable."),
            (PROBE_ACTION, 1000, "The recovery probe: keeps its player first on the board."),
        ):
            try:
                await score.CreateAction(
                    score_service_pb2.CreateActionRequest(
                        action=score_service_pb2.Action(
                            action_id=action_id,
                            name=action_id,
                            description=about,
                            base_points=points,
                            difficulty_multiplier=1.0,
                            daily_limit=100_000,
                            active=True,
                        )
                    ),
                    metadata=call_metadata(token),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:  # there from an earlier run on this database
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        self.players = [await self.new_player(f"load{i}") for i in range(self.options.players)]
        self.probe = await self.new_player("probe")
        self._strays = await stray_rows(self.rig.database_url, LOAD_ACTION)
        self.viewers.start()

    async def _admin_token(self) -> str:
        secret = secrets.token_urlsafe(24)
        await asyncio.to_thread(
            save_service_account, self.rig.stack.env, ADMIN_CLIENT, secret, ADMIN_SCOPES
        )
        auth = auth_service_pb2_grpc.AuthServiceStub(self._channels[0])
        issued = await auth.IssueServiceToken(
            auth_service_pb2.IssueServiceTokenRequest(client_id=ADMIN_CLIENT, client_secret=secret),
            timeout=10,
        )
        return str(issued.access_token)

    async def new_player(self, name: str) -> Player:
        return await register(self._client, name)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.viewers.stop()
        await self._client.aclose()
        for channel in (*self._channels, self._leaderboard):
            await channel.close()

    # ---------------------------------------------------------------- tokens

    async def token_status(self, token: str) -> int:
        """The edge's answer to GET /api/auth/me with this token (0: no answer)."""
        try:
            reply = await self._client.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
        except httpx.HTTPError:
            return 0
        return reply.status_code

    async def logout(self, player: Player) -> int:
        try:
            reply = await self._client.post(
                "/api/auth/logout",
                json={"refreshToken": player.refresh_token},
                headers={"Authorization": f"Bearer {player.token}"},
                timeout=self.options.deadline_seconds,
            )
        except httpx.HTTPError:
            return 0
        return reply.status_code

    def revoke(self, token: str) -> None:
        self._fresh_revocations.append(token)

    async def _revocations_hold(self) -> list[str]:
        """Every revoked token is refused (401); one revoked in this scenario gets a few
        seconds (the documented bound is about 1 s after Redis answers again)."""
        problems = []
        for token in self._fresh_revocations:
            deadline = time.monotonic() + 10
            while (status := await self.token_status(token)) != 401:
                if time.monotonic() > deadline:
                    problems.append(f"a token revoked during the fault still answers {status}")
                    break
                await asyncio.sleep(0.5)
        self.revoked += self._fresh_revocations
        self._fresh_revocations = []
        for token in self.revoked:
            if (status := await self.token_status(token)) != 401:
                problems.append(f"a revoked token answers {status}")
        return problems

    # ---------------------------------------------------------------- one scenario

    async def run(self, index: int, scenario: Scenario) -> Outcome:
        options = self.options
        outcome = Outcome(scenario.name, scenario.how, viewers=options.viewers)
        tag = f"s{index}"
        stop = asyncio.Event()
        load = asyncio.create_task(
            run_load(
                self._client,
                self.players,
                LOAD_ACTION,
                tag=tag,
                rate=options.rate,
                deadline=options.deadline_seconds,
                stop=stop,
            )
        )
        try:
            await asyncio.sleep(options.lead_seconds)
            outcome.notes += await scenario.fault(self)
            fault_end = time.monotonic()
            outcome.recovery_seconds = await self._recovery(tag, fault_end)
            await asyncio.sleep(max(0.0, fault_end + options.tail_seconds - time.monotonic()))
        finally:
            stop.set()
            traffic = await load
        await self._check(outcome, scenario, tag, traffic)
        return outcome

    async def _recovery(self, tag: str, fault_end: float) -> float | None:
        """Seconds from the fault's end until a fresh completion (the probe's) is in the Redis
        ranking and a viewer was sent it; None past the cap."""
        assert self.probe is not None and self.ranking is not None
        cap = fault_end + self.options.recovery_cap_seconds
        score = None
        attempt = 0
        while score is None and time.monotonic() < cap:
            result, data = await complete(
                self._client,
                self.probe,
                PROBE_ACTION,
                f"probe-{tag}-{attempt}",
                self.options.deadline_seconds,
            )
            attempt += 1
            if result == OK:
                score = int(str(data["newScore"]))
            else:
                await asyncio.sleep(0.2)
        ranked_at = seen_at = None
        while score is not None and time.monotonic() < cap:
            now = time.monotonic()
            if ranked_at is None and holds(await self.ranking.top10(), self.probe.user_id, score):
                ranked_at = now
            if seen_at is None and any(
                holds(s.board, self.probe.user_id, score) for s in await self.viewers.states()
            ):
                seen_at = now
            if ranked_at is not None and seen_at is not None:
                return round(max(ranked_at, seen_at) - fault_end, 2)
            await asyncio.sleep(0.05)
        return None

    async def _check(
        self, outcome: Outcome, scenario: Scenario, tag: str, traffic: TrafficResult
    ) -> None:
        assert self.ranking is not None
        options = self.options
        counts = traffic.outcomes
        outcome.requests = len(traffic.requests)
        outcome.answered = traffic.answered
        outcome.errors = dict(sorted((k, v) for k, v in counts.items() if k != OK))
        outcome.max_latency_seconds = round(
            max((s.seconds for s in traffic.requests.values()), default=0.0), 2
        )
        violations = outcome.violations
        if counts[HANG]:
            hung = [rid for rid, sent in traffic.requests.items() if sent.outcome == HANG]
            violations.append(
                f"{counts[HANG]} requests unanswered within their deadline "
                f"({options.deadline_seconds:.0f} s), e.g. {', '.join(hung[:5])}"
            )
        allowed = {OK, *scenario.also_allowed}
        unexpected = Counter(
            {k: v for k, v in counts.items() if k not in allowed and not k.startswith("503")}
        )
        unexpected.pop(HANG, None)
        if unexpected:
            violations.append(f"answers other than success or 503: {dict(unexpected)}")
        if outcome.recovery_seconds is None:
            violations.append(f"no recovery within {options.recovery_cap_seconds:.0f} s")
        # A client of its own each time: a restarted Redis closed the connections of the last.
        async with aioredis.Redis.from_url(self.rig.redis_url) as redis:
            settled = await wait_settled(
                self.rig.database_url,
                redis,
                self._keys,
                DEFAULT_BOARD,
                timeout=options.settle_seconds,
            )
        if settled.outbox_rows or settled.pending_events:
            outcome.notes.append(
                f"not settled after {settled.seconds} s: outbox {settled.outbox_rows}, "
                f"events {settled.pending_events}"
            )
        ledger, self._strays = await count_ledger(
            self.rig.database_url, LOAD_ACTION, tag, traffic, self._strays
        )
        outcome.lost, outcome.doubled = ledger.lost, ledger.doubled
        outcome.landed_unacked = ledger.landed_unacked
        if ledger.lost or ledger.users_short:
            violations.append(
                f"{ledger.lost} acknowledged completions missing from the ledger "
                f"({ledger.users_short} users with fewer rows than acknowledgements)"
            )
        if ledger.doubled or ledger.users_over:
            violations.append(
                f"{ledger.doubled} completions written twice "
                f"({ledger.users_over} users with more rows than requests)"
            )
        outcome.ledger_equals_totals = await ledger_mismatches(self.rig.database_url) == 0
        if not outcome.ledger_equals_totals:
            violations.append("ledger != totals")
        outcome.redis_equals_postgres = await self.ranking.wait_equal(options.settle_seconds)
        if not outcome.redis_equals_postgres:
            violations.append("Redis != PostgreSQL after recovery")
        outcome.viewers_on_final_board = await self._viewers_final()
        if outcome.viewers_on_final_board < options.viewers:
            violations.append(
                f"{options.viewers - outcome.viewers_on_final_board} viewers not on the final board"
            )
        states = await self.viewers.states()
        backwards = sum(s.backwards for s in states)
        if backwards:
            outcome.notes.append(f"{backwards} snapshots older than one before on a connection")
        problems = await self._revocations_hold()
        outcome.revoked_refused = not problems
        violations += problems

    async def _viewers_final(self) -> int:
        """Viewers on the final board (the Redis ranking's top 10, once load has stopped and
        Redis == PostgreSQL), given some seconds to get there."""
        assert self.ranking is not None
        deadline = time.monotonic() + 20
        best = 0
        while True:
            final = await self.ranking.top10()
            if final is not None:
                best = on_board(await self.viewers.states(), final)
                if best == self.options.viewers:
                    return best
            if time.monotonic() > deadline:
                return best
            await asyncio.sleep(0.5)
