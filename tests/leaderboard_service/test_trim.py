"""The stream never drops an event no consumer has applied: with the consumers down the relay
stops at the stream's cap and the events wait in the outbox; once a consumer is back everything
is applied, the ranking equals PostgreSQL, and only acknowledged entries are trimmed."""

from __future__ import annotations

from leaderboard_service.config import ConsumerSettings
from leaderboard_service.reconcile import compare
from leaderboard_service.scripts import Scripts
from score_service.config import RelaySettings
from tests.conftest import StackFactory
from tests.leaderboard_service.support import Game, pg_order, players, redis_order, wait_settled
from tests.support.ledger import outbox_count
from tests.support.servers import wait_for

CAP = 5
COMPLETIONS = 12


async def test_a_full_stream_holds_events_in_the_outbox_until_consumers_return(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(
        # One row per batch: the cap is checked before each batch, so it is then exact.
        score={"relay": RelaySettings(sweep_seconds=0.1, batch_size=1, stream_max_length=CAP)},
        leaderboard={"consumer": ConsumerSettings(enabled=False)},
    ) as stack:
        keys = stack.keys.board("default")
        users = await players(stack.pool, 4)
        async with await Game.open(stack) as game:
            for n in range(COMPLETIONS):
                await game.complete(users[n % len(users)])

        # No consumer: the relay fills the stream to its cap and stops; nothing is trimmed.
        async def held() -> bool:
            return (
                await stack.redis.xlen(keys.events) == CAP
                and await outbox_count(stack.pool) == COMPLETIONS - CAP
            )

        await wait_for(held, timeout=20)

        await stack.stop_service("leaderboard")
        stack.config.leaderboard = {
            "consumer": ConsumerSettings(
                name="back", block_ms=100, check_seconds=0, trim_seconds=0.1
            )
        }
        await stack.start_service("leaderboard")
        await wait_settled(stack)

        expected = await pg_order(stack.pool)
        assert sorted(total for _, total, _ in expected) == [21, 21, 21, 21]  # 3 x 7 points each
        assert await redis_order(stack.redis, keys) == expected
        assert (await compare(stack.pool, stack.redis, Scripts(stack.redis), keys)).mismatched == 0

        # Acknowledged entries are trimmed; the last delivered one may stay.
        async def trimmed() -> bool:
            return int(await stack.redis.xlen(keys.events)) <= 1

        await wait_for(trimmed, timeout=20)
