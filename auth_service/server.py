"""Builds and serves auth_service."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from auth_service.config import Settings
from auth_service.issuer import TokenIssuer
from auth_service.keeper import DenylistKeeper
from auth_service.passwords import Passwords
from auth_service.servicer import PUBLIC_METHODS, AuthServicer
from auth_service.store import AuthStore
from common import service
from common.auth.denylist import Denylist
from common.config import ConfigError
from common.grpc_server import RunningServer, ServiceBinding, start_server
from common.ratelimit import SlidingWindowLimiter
from common.redis_keys import Keys
from common.service import Deps, ProcessSettings
from scoreboard.auth.v1 import auth_service_pb2, auth_service_pb2_grpc

log = logging.getLogger("scoreboard.auth")
SERVICE_NAME = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


async def build_server(settings: Settings, deps: Deps) -> RunningServer:
    keys = Keys(settings.redis.key_prefix)
    store = AuthStore(deps.db)
    denylist = Denylist(deps.redis, keys)
    await check_eviction_policy(denylist, require_noeviction=settings.redis.require_noeviction)
    keeper = DenylistKeeper(store, denylist)
    servicer = AuthServicer(
        settings,
        store,
        Passwords(settings.passwords),
        TokenIssuer(
            settings.signing_key_file,
            issuer=settings.verifier.issuer,
            audience=settings.verifier.audience,
            activation_seconds=settings.key_activation_seconds,
        ),
        keeper,
        SlidingWindowLimiter(deps.redis, keys),
    )
    running = await start_server(
        settings.grpc,
        [
            ServiceBinding(
                SERVICE_NAME,
                lambda server: auth_service_pb2_grpc.add_AuthServiceServicer_to_server(
                    servicer, server
                ),
            )
        ],
        deps.verifier,
        public_methods=PUBLIC_METHODS,
    )
    running.tasks.append(asyncio.create_task(keeper.run(), name="denylist-keeper"))
    running.parts["denylist_keeper"] = keeper
    return running


async def check_eviction_policy(denylist: Denylist, *, require_noeviction: bool) -> None:
    """Revocations live in Redis without a TTL; under an evicting maxmemory-policy Redis may
    still drop them (and the per-token keys kept for older verifiers, which have TTLs). Warn,
    or refuse to start when SCOREBOARD_REQUIRE_NOEVICTION is on. Managed Redis may forbid
    CONFIG: then say it could not be checked."""
    try:
        policy = await denylist.eviction_policy()
    except (OSError, aioredis.RedisError) as exc:
        log.warning("cannot check Redis maxmemory-policy (CONFIG GET refused): %r", exc)
        return
    if policy in ("", "noeviction"):
        return
    message = (
        f"Redis maxmemory-policy is {policy}: revocations could be evicted and revoked tokens "
        "accepted again; set maxmemory-policy noeviction"
    )
    if require_noeviction:
        raise ConfigError(message + " (SCOREBOARD_REQUIRE_NOEVICTION is on)")
    log.warning(message)


async def serve(settings: Settings) -> None:
    process = ProcessSettings.of("auth_service", settings, database=settings.database)
    await service.serve(process, lambda deps: build_server(settings, deps))
