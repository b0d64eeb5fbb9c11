"""The stream consumer under faults: killed mid-batch, a dead replica's pending entries, two
replicas sharing the stream, malformed and poison events."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from leaderboard_service.config import ConsumerSettings
from leaderboard_service.consumer import EventConsumer
from leaderboard_service.reconcile import compare
from leaderboard_service.scripts import Scripts
from tests.conftest import StackFactory
from tests.leaderboard_service.support import (
    GROUP,
    Game,
    Seeded,
    at,
    event,
    metric,
    micros,
    outbox_empty,
    pg_order,
    players,
    publish,
    redis_order,
    text,
    wait_drained,
    wait_settled,
)
from tests.support.servers import wait_for


async def pending_by_consumer(stack: Any, keys: Any) -> dict[str, int]:
    summary: Any = await stack.redis.xpending(keys.events, GROUP)
    return {text(c["name"]): int(c["pending"]) for c in summary["consumers"]}


async def applied(stack: Any, keys: Any, row: Seeded) -> bool:
    state = await stack.redis.hget(keys.users, row.user_id)
    return state is not None and text(state).startswith(f"{row.version}|")


async def test_a_consumer_killed_mid_batch_loses_and_double_counts_nothing(
    stack_factory: StackFactory,
) -> None:
    entered = asyncio.Event()
    hold = True

    async def before_apply(ids: list[str]) -> None:
        if hold:
            entered.set()
            await asyncio.Event().wait()  # the process dies here: cancelled, never applied

    consumer = ConsumerSettings(name="lb-0", block_ms=100, check_seconds=0)
    async with stack_factory(
        leaderboard={"consumer": consumer, "before_apply": before_apply}
    ) as stack:
        keys = stack.keys.board("default")
        users = await players(stack.pool, 6)
        async with await Game.open(stack) as game:
            for _ in range(4):
                await asyncio.gather(*(game.complete(u) for u in users))
            await asyncio.wait_for(entered.wait(), 20)
            await wait_for(lambda: outbox_empty(stack.pool))
            held = await pending_by_consumer(stack, keys)
            assert held.get("lb-0", 0) >= 1
            assert await stack.redis.zcard(keys.ranking) == 0

            await stack.stop_service("leaderboard")
            assert await pending_by_consumer(stack, keys) == held  # nothing acknowledged
            hold = False
            await stack.start_service("leaderboard")  # same consumer name: re-reads its own
            await wait_settled(stack)

            expected = await pg_order(stack.pool)
            assert [total for _, total, _ in expected] == [28] * 6  # 4 x 7 points each
            assert await redis_order(stack.redis, keys) == expected
            assert (
                await compare(stack.pool, stack.redis, Scripts(stack.redis), keys)
            ).mismatched == 0

            # The relay publishing everything again (a crash before its delete) changes nothing.
            all_entries: Any = await stack.redis.xrange(keys.events)
            await publish(stack.redis, keys, [fields[b"e"] for _, fields in all_entries])
            await wait_drained(stack.redis, keys)
            assert await redis_order(stack.redis, keys) == expected


async def test_a_dead_consumers_pending_entries_are_claimed(stack_factory: StackFactory) -> None:
    consumer = ConsumerSettings(name="alive", block_ms=100, claim_idle_ms=300, check_seconds=0)
    async with stack_factory(leaderboard={"consumer": consumer}) as stack:
        keys = stack.keys.board("default")
        rows = [Seeded(100 + i, at(i)) for i in range(5)]
        claimed_before = metric("scoreboard_events_claimed_total")
        # A replica reads the entries and dies before applying them: added and read in one
        # MULTI, so the live consumer never sees them as new.
        async with stack.redis.pipeline(transaction=True) as pipe:
            for row in rows:
                pipe.xadd(keys.events, {"e": event(row)})
            pipe.xreadgroup(GROUP, "ghost", {keys.events: ">"}, count=100)
            await pipe.execute()
        assert (await pending_by_consumer(stack, keys)).get("ghost") == 5

        await wait_drained(stack.redis, keys)
        assert await redis_order(stack.redis, keys) == [
            (r.user_id, r.total, micros(r.reached)) for r in reversed(rows)
        ]
        assert metric("scoreboard_events_claimed_total") - claimed_before == 5
        assert (await pending_by_consumer(stack, keys)).get("ghost", 0) == 0

        async def ghost_forgotten() -> bool:
            consumers: Any = await stack.redis.xinfo_consumers(keys.events, GROUP)
            return "ghost" not in {text(c["name"]) for c in consumers}

        await wait_for(ghost_forgotten, timeout=30)


async def test_two_consumers_share_the_stream_and_apply_each_event_once(
    stack_factory: StackFactory,
) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}

    async def record_a(ids: list[str]) -> None:
        seen["a"].extend(ids)

    async def record_b(ids: list[str]) -> None:
        seen["b"].extend(ids)

    settings = ConsumerSettings(name="a", batch_size=5, block_ms=100, check_seconds=0)
    async with stack_factory(leaderboard={"consumer": settings, "before_apply": record_a}) as stack:
        keys = stack.keys.board("default")
        other = EventConsumer(
            stack.redis,
            Scripts(stack.redis),
            keys,
            ConsumerSettings(name="b", batch_size=5, block_ms=100),
            on_not_ready=lambda: None,
            fault=record_b,
        )
        task = asyncio.create_task(other.run())
        try:
            await wait_for(lambda: consumer_known(stack, keys, "b"))
            rows = [Seeded(i % 17, at(i), name=f"R{i}") for i in range(200)]
            ids: list[str] = []
            for start in range(0, len(rows), 20):
                ids += await publish(
                    stack.redis, keys, [event(r) for r in rows[start : start + 20]]
                )
            await wait_drained(stack.redis, keys)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert seen["a"] and seen["b"]
        assert not set(seen["a"]) & set(seen["b"])
        assert sorted(seen["a"] + seen["b"]) == sorted(ids)
        assert len(await redis_order(stack.redis, keys)) == 200


async def consumer_known(stack: Any, keys: Any, name: str) -> bool:
    try:
        consumers: Any = await stack.redis.xinfo_consumers(keys.events, GROUP)
    except Exception:
        return False
    return name in {text(c["name"]) for c in consumers}


async def test_malformed_events_go_to_the_dead_letters_at_once(
    stack_factory: StackFactory,
) -> None:
    consumer = ConsumerSettings(name="dl", block_ms=100, check_seconds=0)
    async with stack_factory(leaderboard={"consumer": consumer}) as stack:
        keys = stack.keys.board("default")
        before = metric("scoreboard_dead_letters_total", reason="malformed")
        good = [Seeded(10, at(1)), Seeded(20, at(2))]
        odd = Seeded(30, at(3))
        async with stack.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.events, {"e": event(good[0])})
            pipe.xadd(keys.events, {"e": b"\xff\x00 not a protobuf"})
            pipe.xadd(keys.events, {"x": b"no event field"})
            pipe.xadd(keys.events, {"e": event(odd, board="other")})
            pipe.xadd(keys.events, {"e": event(odd, user_id=odd.user_id.upper())})
            pipe.xadd(keys.events, {"e": event(odd, total=2**60)})
            pipe.xadd(keys.events, {"e": event(good[1])})
            ids = await pipe.execute()
        await wait_drained(stack.redis, keys)

        dead: Any = await stack.redis.xrange(keys.dead_letters)
        assert [text(fields[b"id"]) for _, fields in dead] == [text(i) for i in ids[1:6]]
        reasons = [text(fields[b"why"]) for _, fields in dead]
        assert all(r.startswith("malformed: ") for r in reasons)
        assert "board" in reasons[2] and "user_id" in reasons[3] and "total" in reasons[4]
        assert metric("scoreboard_dead_letters_total", reason="malformed") - before == 5
        assert [u for u, _, _ in await redis_order(stack.redis, keys)] == [
            good[1].user_id,
            good[0].user_id,
        ]


async def test_a_poison_event_is_dead_lettered_after_max_deliveries_without_blocking(
    stack_factory: StackFactory,
) -> None:
    slow = ConsumerSettings(
        name="px", block_ms=100, claim_idle_ms=60_000, max_deliveries=3, check_seconds=0
    )
    async with stack_factory(leaderboard={"consumer": slow}) as stack:
        keys = stack.keys.board("default")
        before = metric("scoreboard_dead_letters_total", reason="exhausted")
        victim = Seeded(10, at(1))
        await publish(stack.redis, keys, [event(victim)])
        await wait_drained(stack.redis, keys)
        # Somebody wrote over the victim's state by hand: its next event cannot be applied
        # (the script will not guess which ranking member to replace).
        await stack.redis.hset(keys.users, victim.user_id, "garbage")
        poison = Seeded(50, at(2), version=2, user_id=victim.user_id)
        others = [Seeded(20, at(3)), Seeded(30, at(4))]
        poison_id, *_ = await publish(stack.redis, keys, [event(r) for r in (poison, *others)])
        for row in others:
            await wait_for(functools.partial(applied, stack, keys, row))
        later = Seeded(40, at(5))
        await publish(stack.redis, keys, [event(later)])
        await wait_for(lambda: applied(stack, keys, later))
        # Not retried before claim_idle_ms: it waits in the pending list, blocking nobody.
        assert await pending_by_consumer(stack, keys) == {"px": 1}
        summary: Any = await stack.redis.xpending_range(keys.events, GROUP, "-", "+", 10)
        assert [text(p["message_id"]) for p in summary] == [poison_id]

        # A restart with a short claim interval retries it until it is exhausted.
        await stack.stop_service("leaderboard")
        stack.config.leaderboard["consumer"] = ConsumerSettings(
            name="px", block_ms=100, claim_idle_ms=200, max_deliveries=3, check_seconds=0
        )
        await stack.start_service("leaderboard")
        await wait_drained(stack.redis, keys)
        dead: Any = await stack.redis.xrange(keys.dead_letters)
        assert [text(f[b"id"]) for _, f in dead] == [poison_id]
        assert text(dead[0][1][b"why"]) == "exhausted: failed 3 deliveries"
        assert dead[0][1][b"e"] == event(poison)
        assert metric("scoreboard_dead_letters_total", reason="exhausted") - before == 1
        assert [u for u, _, _ in await redis_order(stack.redis, keys)] == [
            later.user_id,
            others[1].user_id,
            others[0].user_id,
            victim.user_id,
        ]
