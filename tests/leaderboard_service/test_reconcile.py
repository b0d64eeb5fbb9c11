"""Drift between Redis and PostgreSQL: reported exactly by ReconcileRanking and the
`scoreboard ranking` command, repaired on request, and found and repaired by the periodic check
without false alarms while events are in flight."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from common.redis_values import UserState, ranking_member
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.keeper import count_drift
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    Board,
    Seeded,
    at,
    metric,
    micros,
    pg_order,
    redis_order,
    seed,
)
from tests.support.processes import run_process
from tests.support.servers import wait_for
from tests.support.stack import Stack


async def scoreboard(stack: Stack, *args: str, client: str = "admin-tool") -> tuple[int, str, str]:
    """The installed `scoreboard` command, run as an operator would, against the stack."""
    secret = {"admin-tool": stack.admin_secret, "game-server": stack.game_secret}.get(
        client, "wrong-secret"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        SCOREBOARD_CLIENT_ID=client,
        SCOREBOARD_CLIENT_SECRET=secret,
        SCOREBOARD_AUTH_ADDR=stack.address("auth"),
        SCOREBOARD_LEADERBOARD_ADDR=stack.address("leaderboard"),
    )
    argv = (str(Path(sys.executable).parent / "scoreboard"), "ranking", *args)
    code, out, err = await run_process(*argv, env=env, timeout=120)
    return code, out.decode(), err


async def make_drift(stack: Stack, rows: list[Seeded]) -> int:
    """Five different hand-made differences; returns how many."""
    keys = stack.keys.board("default")

    def member(row: Seeded) -> str:
        return ranking_member(row.user_id, micros(row.reached))

    await stack.redis.zrem(keys.ranking, member(rows[0]))  # a user missing from the ranking
    await stack.redis.zincrby(keys.ranking, -5, member(rows[1]))  # a wrong total
    await stack.redis.zadd(keys.ranking, {ranking_member("not-a-user", 1): -1})  # an extra
    state = UserState(9, micros(rows[2].reached), False, rows[2].display_name).encode()
    await stack.redis.hset(keys.users, rows[2].user_id, state)  # a version PostgreSQL never had
    await stack.redis.hdel(keys.users, rows[3].user_id)  # a state lost
    return 5


QUIET = ConsumerSettings(name="reconcile", block_ms=100, check_seconds=0)


async def test_reconcile_reports_hand_made_drift_and_repairs_it(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(leaderboard={"consumer": QUIET}) as stack:
        rows = [Seeded(10 * (i % 9), at(i)) for i in range(60)]
        await seed(stack.pool, [*rows, Seeded(99, at(99), banned=True)])
        async with await Board.as_admin(stack) as admin:
            assert (await admin.rebuild()).users == 60
            clean = await admin.reconcile()
            assert (clean.users_in_database, clean.users_in_ranking) == (60, 60)
            assert (clean.mismatched, clean.repaired) == (0, False)

            drift = await make_drift(stack, rows)
            report = await admin.reconcile()
            assert report.mismatched == drift
            assert (report.users_in_database, report.users_in_ranking) == (60, 60)
            assert not report.repaired

            repaired = await admin.reconcile(repair=True)
            assert (repaired.mismatched, repaired.repaired) == (drift, True)
            assert (await admin.reconcile()).mismatched == 0
        keys = stack.keys.board("default")
        assert await redis_order(stack.redis, keys) == await pg_order(stack.pool)


async def test_the_scoreboard_ranking_command(stack_factory: StackFactory) -> None:
    async with stack_factory(leaderboard={"consumer": QUIET}) as stack:
        rows = [Seeded(100 - i, at(i)) for i in range(25)]
        await seed(stack.pool, rows)
        code, out, _ = await scoreboard(stack, "rebuild")
        assert (code, out) == (0, "rebuilt: 25 ranked users\n")
        code, out, _ = await scoreboard(stack, "reconcile")
        assert code == 0
        assert "mismatched: 0" in out

        drift = await make_drift(stack, rows)
        code, out, _ = await scoreboard(stack, "reconcile")
        assert code == 1
        assert out.splitlines() == [
            "users in PostgreSQL: 25",
            "users in Redis: 25",
            f"mismatched: {drift}",
            "repaired: no",
        ]
        code, out, _ = await scoreboard(stack, "reconcile", "--repair")
        assert code == 0
        assert "repaired: yes" in out
        code, out, _ = await scoreboard(stack, "reconcile")
        assert (code, "mismatched: 0" in out) == (0, True)

        code, _, err = await scoreboard(stack, "rebuild", client="game-server")
        assert code == 3
        assert "PERMISSION_DENIED" in err and "admin" in err
        code, _, err = await scoreboard(stack, "reconcile", client="nobody")
        assert code == 3
        assert "INVALID_CREDENTIALS" in err or "UNAUTHENTICATED" in err
        code, _, err = await scoreboard(stack, "rebuild", "--repair")
        assert code == 2


async def test_the_periodic_check_finds_and_repairs_drift(stack_factory: StackFactory) -> None:
    watchful = ConsumerSettings(name="keeper", block_ms=100, check_seconds=0.2)
    async with stack_factory(leaderboard={"consumer": watchful}) as stack:
        keys = stack.keys.board("default")

        async def exact() -> bool:
            return await redis_order(stack.redis, keys) == await pg_order(stack.pool)

        # Users written to PostgreSQL behind the consumer's back: an incomplete ranking.
        rows = [Seeded(10 * (i % 5), at(i)) for i in range(30)]
        repairs = metric("scoreboard_ranking_drift_repairs_total", board="default")
        await seed(stack.pool, rows)
        await wait_for(exact, timeout=30)
        assert metric("scoreboard_ranking_drift_repairs_total", board="default") > repairs

        # A member PostgreSQL does not have.
        await stack.redis.zadd(keys.ranking, {ranking_member("intruder", 1): -1000})
        await wait_for(exact, timeout=30)

        # A top user's total changed by hand at the same version.
        top = max(rows, key=lambda r: (r.total, -micros(r.reached)))
        member = ranking_member(top.user_id, micros(top.reached))
        await stack.redis.zincrby(keys.ranking, -3, member)
        await wait_for(exact, timeout=30)
        assert metric("scoreboard_ranking_drift_users", board="default") == 0


@pytest.mark.parametrize(
    ("in_redis", "in_db", "previous", "drift"),
    [
        (100, 100, None, False),
        (100, 100, 100, False),
        (95, 100, None, False),  # first look: could be in flight
        (95, 100, 90, False),  # steady sign-ups: Redis behind, but past the previous check
        (100, 110, 100, False),
        (89, 100, 90, True),  # still short of what PostgreSQL had a whole check ago
        (101, 100, 100, True),  # Redis was counted first: it cannot be ahead
        (0, 30, 30, True),
    ],
)
def test_count_check_tells_drift_from_events_in_flight(
    in_redis: int, in_db: int, previous: int | None, drift: bool
) -> None:
    assert bool(count_drift(in_redis, in_db, previous)) is drift
