"""Builds and serves leaderboard_service (gRPC queries, the stream consumer, the keeper)."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from common import service
from common.grpc_server import RunningServer, ServiceBinding, start_server
from common.redis_keys import Keys
from common.service import Deps, ProcessSettings
from common.telemetry import sample_every
from leaderboard_service.config import Settings
from leaderboard_service.consumer import EventConsumer
from leaderboard_service.keeper import RankingKeeper
from leaderboard_service.scheduler import BoardBook, PeriodScheduler
from leaderboard_service.scripts import Scripts
from leaderboard_service.servicer import LeaderboardServicer
from leaderboard_service.stores import Stores
from leaderboard_service.stream_metrics import sample_stream
from scoreboard.leaderboard.v1 import leaderboard_service_pb2, leaderboard_service_pb2_grpc

log = logging.getLogger("scoreboard.leaderboard")
SERVICE_NAME = leaderboard_service_pb2.DESCRIPTOR.services_by_name["LeaderboardService"].full_name


async def build_server(settings: Settings, deps: Deps) -> RunningServer:
    keys = Keys(settings.redis.key_prefix)
    scripts = Scripts(deps.redis, max_passed=settings.rank_max_passed)
    book = BoardBook(keys, settings.boards)
    stores = Stores(deps.db, deps.redis, scripts, keys, settings.boards)
    keeper = RankingKeeper(
        stores,
        check_seconds=settings.consumer.check_seconds,
        grace_seconds=settings.consumer.check_grace_seconds,
        period_of=book.period,
        keys_of=book.keys,
    )
    tasks: list[asyncio.Task[None]] = []

    def start_consumer(board: str) -> None:
        consumer = EventConsumer(
            deps.redis,
            scripts,
            # The board's keys with its sort order (known once the scheduler read it).
            book.keys(board, 1),
            settings.consumer,
            on_not_ready=keeper.request_check,
            fault=settings.before_apply,
            repair=partial(keeper.repair_users, board),
            asc=partial(book.asc, board),
        )
        tasks.append(asyncio.create_task(consumer.run()))

    def new_board(board: str) -> None:
        keeper.add_board(board)
        if settings.consumer.enabled:
            start_consumer(board)

    scheduler = PeriodScheduler(
        deps.db,
        deps.redis,
        book,
        clock=settings.clock,
        interval_seconds=settings.period_check_seconds,
        grace_seconds=settings.period_key_grace_seconds,
        on_new_board=new_board,
        # The new period's ranking is built (empty) and published at once.
        on_new_period=lambda _board, _period: keeper.request_check(),
        fault=settings.before_period_event,
    )
    servicer = LeaderboardServicer(
        stores,
        percentile_min_players=settings.percentile_min_players,
        book=book,
        scheduler=scheduler,
    )
    running = await start_server(
        settings.grpc,
        [
            ServiceBinding(
                SERVICE_NAME,
                lambda server: (
                    leaderboard_service_pb2_grpc.add_LeaderboardServiceServicer_to_server(
                        servicer, server
                    )
                ),
            )
        ],
        deps.verifier,
    )
    # Consumers of boards created later are stopped with the server's own tasks.
    running.tasks.extend(tasks)
    tasks = running.tasks
    running.parts["scheduler"] = scheduler
    running.parts["book"] = book
    if settings.periods_enabled:
        # Boards and their current periods are known before the first query.
        try:
            await scheduler.tick()
        except Exception as exc:
            log.warning("period scheduler's first pass failed; it retries: %s", exc)
        tasks.append(asyncio.create_task(scheduler.run()))
    running.tasks.append(asyncio.create_task(keeper.run()))
    if settings.consumer.enabled:
        for board in settings.boards:
            start_consumer(board)
    for board in settings.boards:
        sample = partial(sample_stream, deps.redis, keys.board(board), settings.consumer.group)
        running.tasks.append(
            asyncio.create_task(
                sample_every(settings.grpc.metrics_sample_seconds, sample, name="stream")
            )
        )
    return running


async def serve(settings: Settings) -> None:
    process = ProcessSettings.of("leaderboard_service", settings, database=settings.database)
    await service.serve(process, lambda deps: build_server(settings, deps))
