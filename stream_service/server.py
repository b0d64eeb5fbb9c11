"""Builds and serves stream_service."""

from __future__ import annotations

import asyncio

from common import service
from common.config import DEFAULT_BOARD
from common.grpc_server import RunningServer, ServiceBinding, start_server
from common.redis_keys import Keys
from common.service import Deps, ProcessSettings
from scoreboard.stream.v1 import stream_service_pb2, stream_service_pb2_grpc
from stream_service.config import Settings
from stream_service.hubs import HubRegistry
from stream_service.rank_hub import RankHub
from stream_service.servicer import StreamServicer

SERVICE_NAME = stream_service_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name


async def build_server(settings: Settings, deps: Deps) -> RunningServer:
    keys = Keys(settings.redis.key_prefix)
    hubs = HubRegistry(
        deps.redis,
        keys,
        resident=settings.boards,
        probe_seconds=settings.subscription_probe_seconds,
        idle_seconds=settings.board_idle_seconds,
        max_boards=settings.max_boards,
    )
    rank_hubs = {
        DEFAULT_BOARD: RankHub(
            deps.redis,
            keys.board(DEFAULT_BOARD),
            settings.rank,
            probe_seconds=settings.subscription_probe_seconds,
        )
    }
    servicer = StreamServicer(
        hubs,
        rank_hubs,
        per_principal=settings.watch_top10_per_principal,
        per_service=settings.watch_top10_per_service,
    )
    running = await start_server(
        settings.grpc,
        [
            ServiceBinding(
                SERVICE_NAME,
                lambda server: stream_service_pb2_grpc.add_StreamServiceServicer_to_server(
                    servicer, server
                ),
            )
        ],
        deps.verifier,
    )
    running.parts["hubs"] = hubs.hubs
    running.parts["hub_registry"] = hubs
    running.parts["rank_hubs"] = rank_hubs
    running.tasks.append(asyncio.create_task(hubs.run(), name="snapshot-hubs"))
    for board, rank_hub in rank_hubs.items():
        running.tasks.append(asyncio.create_task(rank_hub.run(), name=f"rank-hub:{board}"))
        running.tasks.append(
            asyncio.create_task(rank_hub.run_ticker(), name=f"rank-ticker:{board}")
        )

    async def end_streams() -> None:
        hubs.close()
        for rank_hub in rank_hubs.values():
            rank_hub.close()

    running.on_stop.append(end_streams)
    return running


async def serve(settings: Settings) -> None:
    process = ProcessSettings.of("stream_service", settings)
    await service.serve(process, lambda deps: build_server(settings, deps))
