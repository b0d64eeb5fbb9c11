"""Everything the edge's routes share, built once in the lifespan and kept on app.state."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from starlette.requests import HTTPConnection

from common.auth.principal import Principal
from common.auth.tokens import TokenVerifier
from common.errors import Reason, unauthenticated
from common.ratelimit import LocalWindowLimiter, SlidingWindowLimiter
from common.redis_keys import Keys
from edge.config import Settings
from edge.fanout import FanOut
from edge.live import LiveBoard
from edge.live_boards import BoardCatalog, LiveBoards
from edge.upstream import Upstream


@dataclass
class EdgeState:
    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    verifier: TokenVerifier
    upstream: Upstream
    limiter: SlidingWindowLimiter
    fanout: FanOut
    # The default board's upstream stream; `boards` holds it and the other boards' in use.
    live: LiveBoard
    boards: LiveBoards
    catalog: BoardCatalog
    shutting_down: bool = False
    # Used only while Redis is unreachable, by routes whose policy is to keep limiting.
    local_limiter: LocalWindowLimiter = field(default_factory=LocalWindowLimiter)


def edge_state(conn: HTTPConnection) -> EdgeState:
    state: EdgeState = conn.app.state.edge
    return state


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated(Reason.UNAUTHENTICATED, "the authorization must be a bearer token")
    return token.strip()


async def optional_principal(conn: HTTPConnection) -> Principal | None:
    """The caller when a token is sent (an invalid one is refused); None when none is."""
    token = bearer_token(conn)
    if token is None:
        return None
    return await edge_state(conn).verifier.verify(token)


async def require_principal(conn: HTTPConnection) -> Principal:
    principal = await optional_principal(conn)
    if principal is None:
        raise unauthenticated(Reason.UNAUTHENTICATED, "a bearer token is required")
    return principal


def client_address(conn: HTTPConnection) -> str:
    """The HTTP client's address. Behind a trusted ingress (trust_forwarded, and the peer one of
    forwarded_allow_ips, the proxies uvicorn believes too), the last X-Forwarded-For entry: the
    one the ingress appended; earlier ones are the client's word. Any other peer's header is its
    own word, and ignored."""
    peer = conn.client.host if conn.client else "unknown"
    settings = edge_state(conn).settings
    if settings.trust_forwarded and _trusted_proxy(peer, settings.forwarded_allow_ips):
        forwarded = conn.headers.get("x-forwarded-for")
        if forwarded:
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last[:64]
    return peer


def _trusted_proxy(peer: str, allowed: tuple[str, ...]) -> bool:
    if "*" in allowed:
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer in allowed
    return any(address in network for network in _networks(allowed))


@functools.cache
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed if item != "*")
