"""Builds and serves score_service (gRPC server plus the outbox relay)."""

from __future__ import annotations

import asyncio
from functools import partial

from common import service
from common.auth.denylist import Denylist
from common.grpc_server import RunningServer, ServiceBinding, start_server
from common.redis_keys import Keys
from common.service import Deps, ProcessSettings
from common.telemetry import sample_every
from score_service.admin import AdminServicer
from score_service.admin_queries import AdminQueries
from score_service.admin_store import AdminStore
from score_service.anomaly_store import AnomalyStore
from score_service.backlog import sample_outbox
from score_service.catalog_store import CatalogStore
from score_service.config import Settings
from score_service.ledger import Ledger
from score_service.purge import Purger
from score_service.ranks import RankReader
from score_service.relay import OutboxRelay
from score_service.servicer import ScoreServicer
from score_service.tickets import TicketIssuer, TicketSigner
from scoreboard.admin.v1 import admin_service_pb2, admin_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

SERVICE_NAME = score_service_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name
ADMIN_SERVICE_NAME = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


async def build_server(settings: Settings, deps: Deps) -> RunningServer:
    keys = Keys(settings.redis.key_prefix)
    signer = TicketSigner(settings.ticket_secret)
    ledger = Ledger(
        deps.db,
        RankReader(
            deps.redis,
            keys,
            timeout=settings.rank_timeout_seconds,
            budget=settings.rank_fallback_seconds,
        ),
        signer,
        settings.anomalies,
        settings.group_commit,
    )
    servicer = ScoreServicer(settings, ledger, TicketIssuer(deps.db, signer), CatalogStore(deps.db))
    admin = AdminServicer(
        AdminStore(deps.db),
        AdminQueries(deps.db),
        AnomalyStore(deps.db),
        Denylist(deps.redis, keys),
    )
    running = await start_server(
        settings.grpc,
        [
            ServiceBinding(
                SERVICE_NAME,
                lambda server: score_service_pb2_grpc.add_ScoreServiceServicer_to_server(
                    servicer, server
                ),
            ),
            ServiceBinding(
                ADMIN_SERVICE_NAME,
                lambda server: admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
                    admin, server
                ),
            ),
        ],
        deps.verifier,
    )
    if settings.relay.enabled:
        relay = OutboxRelay(
            deps.db, deps.redis, keys, settings.relay, database_url=settings.database.url
        )
        running.tasks.append(asyncio.create_task(relay.run()))
    running.tasks.append(
        asyncio.create_task(
            sample_every(
                settings.grpc.metrics_sample_seconds,
                partial(sample_outbox, deps.db),
                name="outbox",
            )
        )
    )
    if settings.purge.enabled:
        running.tasks.append(asyncio.create_task(Purger(deps.db, settings.purge).run()))
    return running


async def serve(settings: Settings) -> None:
    process = ProcessSettings.of("score_service", settings, database=settings.database)
    await service.serve(process, lambda deps: build_server(settings, deps))
