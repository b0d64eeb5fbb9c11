"""Drift the count and the top sample cannot see (issue 16): an event lost after XADD leaves a
user's ranked total stale. A dead-lettered user is repaired from PostgreSQL at once; an
acknowledged write lost in a Redis failover (the `ready` marker surviving) is repaired by the
periodic version check once the grace window has passed, and an event still in flight within
that window is left to the consumer. A repair never takes a user backwards."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from common.db import Pool
from common.redis_keys import BoardKeys
from common.redis_values import (
    UserState,
    encode_user_state,
    parse_user_state,
    ranking_member,
    ranking_score,
    total_of,
)
from leaderboard_service.config import ConsumerSettings
from leaderboard_service.rebuild import USERS_SQL, apply_states, state_rows
from leaderboard_service.scripts import Scripts
from scoreboard.events.v1 import events_pb2
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    Board,
    Game,
    metric,
    pg_order,
    players,
    publish,
    redis_order,
    wait_settled,
)
from tests.support.servers import wait_for
from tests.support.stack import Stack

GRACE = 3.0
CHECK = 0.2


@dataclass(frozen=True)
class Stored:
    """A user's entry in Redis: the stored state and the total the ranking holds."""

    state: UserState
    total: int | None  # None when not ranked


async def stored(redis: aioredis.Redis, keys: BoardKeys, user: str) -> Stored | None:
    raw = await redis.hget(keys.users, user)
    if raw is None:
        return None
    state = parse_user_state(raw)
    score = await redis.zscore(keys.ranking, ranking_member(user, state.reached_us))
    return Stored(state, None if score is None else total_of(score))


async def restore(redis: aioredis.Redis, keys: BoardKeys, user: str, old: Stored) -> None:
    """Put an older entry back, as a Redis failover that lost the newer write would leave it
    (the `ready` marker untouched)."""
    now = await stored(redis, keys, user)
    assert now is not None and old.total is not None
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.ranking, ranking_member(user, now.state.reached_us))
        pipe.zadd(
            keys.ranking, {ranking_member(user, old.state.reached_us): ranking_score(old.total)}
        )
        pipe.hset(
            keys.users,
            user,
            encode_user_state(
                old.state.version, old.state.reached_us, old.state.excluded, old.state.name
            ),
        )
        await pipe.execute()


async def pg_version_total(pool: Pool, user: str) -> tuple[int, int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT version, total FROM user_scores WHERE board_id = 'default' AND user_id = %s",
            (user,),
        )
        row = await cur.fetchone()
    assert row is not None
    version, total = row
    assert isinstance(version, int) and isinstance(total, int)
    return version, total


async def matches_postgresql(stack: Stack, user: str) -> bool:
    entry = await stored(stack.redis, stack.keys.board("default"), user)
    version, total = await pg_version_total(stack.pool, user)
    return entry is not None and (entry.state.version, entry.total) == (version, total)


async def assert_invariant(stack: Stack) -> None:
    """Redis == PostgreSQL for every user: the same order, and nothing the exact compare finds."""
    keys = stack.keys.board("default")
    assert await redis_order(stack.redis, keys) == await pg_order(stack.pool)
    async with await Board.as_admin(stack) as admin:
        report = await admin.reconcile()
    assert report.mismatched == 0
    assert report.users_in_database == report.users_in_ranking


async def complete_and_settle(stack: Stack, game: Game, user: str) -> Stored:
    await game.complete(user)
    await wait_settled(stack)
    entry = await stored(stack.redis, stack.keys.board("default"), user)
    assert entry is not None
    return entry


async def test_a_dead_lettered_user_is_repaired_from_postgresql_at_once(
    stack_factory: StackFactory,
) -> None:
    # No periodic check: only the dead-letter path can repair anything here.
    settings = ConsumerSettings(name="dead", block_ms=100, check_seconds=0)
    async with stack_factory(leaderboard={"consumer": settings}) as stack:
        keys = stack.keys.board("default")
        async with await Game.open(stack) as game:
            user, other = await players(stack.pool, 2)
            first = await complete_and_settle(stack, game, user)
            await complete_and_settle(stack, game, user)
            await complete_and_settle(stack, game, other)
        # The user's last change is lost in Redis, and what reaches the stream is unusable.
        await restore(stack.redis, keys, user, first)
        assert not await matches_postgresql(stack, user)
        malformed = metric("scoreboard_dead_letters_total", reason="malformed")
        repairs = metric(
            "scoreboard_ranking_user_repairs_total", board="default", cause="dead_letter"
        )
        unreadable = metric("scoreboard_dead_letters_unrepaired_total", reason="unreadable")

        corrupt = events_pb2.ScoreUpdated(board_id="default", user_id=user, version=0)
        await publish(stack.redis, keys, [corrupt.SerializeToString()])
        await wait_for(lambda: matches_postgresql(stack, user), timeout=10)
        assert metric("scoreboard_dead_letters_total", reason="malformed") - malformed == 1
        assert (
            metric("scoreboard_ranking_user_repairs_total", board="default", cause="dead_letter")
            - repairs
            == 1
        )
        async with await Board.as_admin(stack) as admin:
            assert (await admin.rank(user)).entry.score == (
                await pg_version_total(stack.pool, user)
            )[1]

        # A payload that names no user cannot be repaired here: counted, left to the check.
        await publish(stack.redis, keys, [b"\xff not a protobuf"])

        async def flagged() -> bool:
            now = metric("scoreboard_dead_letters_unrepaired_total", reason="unreadable")
            return now - unreadable == 1

        await wait_for(flagged, timeout=10)
        dead = await stack.redis.xlen(keys.dead_letters)
        assert dead == 2
        await wait_settled(stack)
        await assert_invariant(stack)


async def test_the_periodic_check_repairs_a_lost_write_after_the_grace_window_only(
    stack_factory: StackFactory,
) -> None:
    gate = asyncio.Event()
    gate.set()

    async def before_apply(_ids: list[str]) -> None:
        await gate.wait()

    settings = ConsumerSettings(
        name="lost", block_ms=100, check_seconds=CHECK, check_grace_seconds=GRACE
    )
    leaderboard = {"consumer": settings, "before_apply": before_apply}
    async with stack_factory(leaderboard=leaderboard) as stack, await Game.open(stack) as game:
        keys = stack.keys.board("default")
        victim, late, bystander = await players(stack.pool, 3)
        before = await complete_and_settle(stack, game, victim)
        await complete_and_settle(stack, game, late)
        await complete_and_settle(stack, game, bystander)
        behind = metric("scoreboard_ranking_users_behind_total", board="default")
        repairs = metric("scoreboard_ranking_user_repairs_total", board="default", cause="check")

        # An acknowledged write lost in a failover: applied, then gone, `ready` still there.
        await game.complete(victim)
        committed = time.monotonic()
        await wait_for(lambda: matches_postgresql(stack, victim), timeout=10)
        await restore(stack.redis, keys, victim, before)
        assert await stack.redis.exists(keys.ready)
        assert time.monotonic() - committed < GRACE / 2, "too slow to test the grace window"
        await wait_for(lambda: matches_postgresql(stack, victim), timeout=CHECK + GRACE + 10)
        # Not before the grace window had passed (a difference within it may be in flight).
        assert time.monotonic() - committed >= GRACE - 0.5
        assert metric("scoreboard_ranking_users_behind_total", board="default") - behind == 1
        assert (
            metric("scoreboard_ranking_user_repairs_total", board="default", cause="check")
            - repairs
            == 1
        )

        # An event in flight within the grace window is the consumer's, not the check's.
        async with stack.pool.connection() as conn:
            cur = await conn.execute(USERS_SQL, ("default", 1, [late]))  # board, period, users
            older = state_rows(await cur.fetchall())
        gate.clear()
        await game.complete(late)
        await asyncio.sleep(GRACE / 2)
        assert not await matches_postgresql(stack, late)
        assert metric("scoreboard_ranking_users_behind_total", board="default") - behind == 1
        gate.set()
        await wait_settled(stack)
        assert await matches_postgresql(stack, late)
        await asyncio.sleep(GRACE + 4 * CHECK)  # the check has now looked at it too
        assert metric("scoreboard_ranking_users_behind_total", board="default") - behind == 1

        # A repair carrying an older state than Redis holds changes nothing: newer wins.
        current = await stored(stack.redis, keys, late)
        assert await apply_states(Scripts(stack.redis), keys, older, cause="check") == 0
        assert await stored(stack.redis, keys, late) == current
        await assert_invariant(stack)
