"""Prometheus metrics after real traffic: read over HTTP from the edge's /metrics and from a gRPC
service's own metrics port, before and after, and the counters must have moved.

All in-process services share one registry, so the edge's /metrics shows every service's
metrics here; in a cluster each process serves its own. Counters are compared as deltas over the
traffic this test makes; gauges are polled until they show the state the test created."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.config import GrpcServerSettings
from leaderboard_service.config import ConsumerSettings
from score_service.config import RelaySettings
from tests.conftest import StackFactory
from tests.support.clients import Api, Viewer
from tests.support.servers import wait_for
from tests.support.stack import Stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FAST = {"grpc": GrpcServerSettings(port=0, grace_seconds=1.0, metrics_sample_seconds=0.1)}


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.get(url)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return parse(reply.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def present(samples: Samples, name: str) -> bool:
    return any(n == name for n, _ in samples)


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(score=FAST, leaderboard=FAST) as stack:
        yield stack


async def test_metrics_move_after_real_traffic(stack: Stack) -> None:
    metrics_url = stack.edge_url + "/metrics"
    before = await scrape(metrics_url)
    api = Api(stack.edge_url)
    players = [await api.register() for _ in range(2)]
    viewer = await Viewer.open(f"{stack.ws_url}?token={players[0].access_token}")
    try:
        await viewer.wait(lambda m: m["type"] == "CONNECTION_ACK")
        for player in players:
            reply = await api.complete(player, "daily-login")
            assert reply.status_code == 200, reply.text
        refused = await api.complete(players[0], "daily-login")
        assert refused.json()["code"] == "DAILY_LIMIT_REACHED"
        await viewer.wait(
            lambda m: (
                m["type"] == "LEADERBOARD_UPDATE"
                and {e["userId"] for e in m["data"]["top10"]} >= {p.user_id for p in players}
            )
        )
        assert (await api.http.get("/api/leaderboard")).status_code == 200
        # A malformed event: the consumer moves it to the dead-letter stream.
        await stack.redis.xadd(stack.keys.board("default").events, {"e": b"not an event"})

        async def dead_lettered() -> Samples | None:
            samples = await scrape(metrics_url)
            moved = value(samples, "scoreboard_dead_letters_total") > value(
                before, "scoreboard_dead_letters_total"
            )
            dead = value(samples, "scoreboard_dead_letter_entries", board="default") >= 1
            return samples if moved and dead else None

        found = await wait_for(dead_lettered)
        assert found is not None
        after = found
        assert value(after, "scoreboard_ws_connections") >= 1
    finally:
        await viewer.close()
        await api.close()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    complete = "/scoreboard.score.v1.ScoreService/CompleteAction"
    checks: dict[str, Callable[[], float]] = {
        "HTTP latency by route and status": lambda: moved(
            "scoreboard_http_request_seconds_count", route="/api/actions/complete", status="200"
        ),
        "HTTP refusals by status": lambda: moved(
            "scoreboard_http_request_seconds_count", route="/api/actions/complete", status="400"
        ),
        "RPC latency by method and code": lambda: moved(
            "scoreboard_grpc_server_handling_seconds_count", method=complete, code="OK"
        ),
        "RPC refusals by code": lambda: moved(
            "scoreboard_grpc_server_handling_seconds_count",
            method=complete,
            code="FAILED_PRECONDITION",
        ),
        "actions accepted": lambda: moved("scoreboard_actions_total", outcome="accepted"),
        "actions refused by reason": lambda: moved(
            "scoreboard_actions_total", outcome="DAILY_LIMIT_REACHED"
        ),
        "outbox relayed": lambda: moved("scoreboard_outbox_relayed_total"),
        "events applied": lambda: moved("scoreboard_events_applied_total"),
        "top 10 published": lambda: moved("scoreboard_top10_published_total"),
        "dead letters": lambda: moved("scoreboard_dead_letters_total"),
        "WebSocket messages": lambda: moved("scoreboard_ws_messages_sent_total"),
        "broadcast ticks": lambda: moved("scoreboard_ws_broadcast_ticks_total"),
        "propagation to the edge": lambda: moved("scoreboard_propagation_seconds_count"),
        "propagation to the broadcast": lambda: moved(
            "scoreboard_broadcast_propagation_seconds_count"
        ),
        "Redis script latency": lambda: moved(
            "scoreboard_redis_command_seconds_count", command="EVALSHA"
        ),
        "Redis pipeline latency": lambda: moved(
            "scoreboard_redis_command_seconds_count", command="PIPELINE"
        ),
        "PostgreSQL insert latency": lambda: moved(
            "scoreboard_db_statement_seconds_count", statement="INSERT"
        ),
        "PostgreSQL select latency": lambda: moved(
            "scoreboard_db_statement_seconds_count", statement="SELECT"
        ),
    }
    stuck = [what for what, delta in checks.items() if delta() <= 0]
    assert not stuck, f"did not move: {stuck}"
    for gauge in (
        "scoreboard_outbox_backlog",
        "scoreboard_outbox_oldest_seconds",
        "scoreboard_stream_lag_entries",
        "scoreboard_stream_lag_seconds",
        "scoreboard_stream_pending_entries",
        "scoreboard_ws_skipped_total",
        "scoreboard_edge_upstream_connected",
    ):
        assert present(after, gauge), gauge


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _register(stack: Stack, count: int) -> list[str]:
    import grpc

    from scoreboard.auth.v1 import auth_service_pb2, auth_service_pb2_grpc

    channel = grpc.aio.insecure_channel(stack.address("auth"))
    try:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        users = []
        for index in range(count):
            reply = await auth.Register(
                auth_service_pb2.RegisterRequest(
                    username=f"stalled-{index}", password="correct horse battery"
                )
            )
            users.append(reply.user.user_id)
    finally:
        await channel.close()
    return users


async def test_backlog_and_lag_gauges_follow_a_stalled_pipeline(
    stack_factory: StackFactory,
) -> None:
    """With the relay stopped, committed changes wait in the outbox; with the consumer stopped,
    relayed events wait in the stream. Read from score_service's own metrics port."""
    from score_service.relay import OutboxRelay
    from scoreboard.admin.v1 import admin_service_pb2 as pb
    from tests.support.clients import admin_stub
    from tests.support.tokens import admin_metadata

    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    score_grpc = GrpcServerSettings(
        port=0, grace_seconds=1.0, metrics_port=port, metrics_sample_seconds=0.1
    )
    async with stack_factory(
        score={"grpc": score_grpc, "relay": RelaySettings(enabled=False)},
        leaderboard={**FAST, "consumer": ConsumerSettings(enabled=False)},
        with_edge=False,
    ) as stalled:
        keys = stalled.keys.board("default")
        # The group a consumer that has stopped leaves behind.
        await stalled.redis.xgroup_create(keys.events, "leaderboard", id="$", mkstream=True)
        async with admin_stub(stalled) as admin:
            for user in await _register(stalled, 3):
                await admin.AdjustScore(
                    pb.AdjustScoreRequest(user_id=user, points=5, reason="seed"),
                    metadata=await admin_metadata(stalled),
                )

        async def backlog() -> bool:
            samples = await scrape(url)
            return (
                value(samples, "scoreboard_outbox_backlog") >= 3
                and value(samples, "scoreboard_outbox_oldest_seconds") > 0
            )

        await wait_for(backlog)

        relay = OutboxRelay(
            stalled.pool,
            stalled.redis,
            stalled.keys,
            RelaySettings(),
            database_url=stalled.config.database_url,
        )
        assert await relay.drain_once() == 3

        async def lagging() -> bool:
            samples = await scrape(url)
            return (
                value(samples, "scoreboard_stream_lag_entries", board="default") >= 3
                and value(samples, "scoreboard_stream_lag_seconds", board="default") > 0
            )

        await wait_for(lagging)
        # Delivered to a consumer that never acknowledges: pending, no longer lagging.
        await stalled.redis.xreadgroup("leaderboard", "stuck", {keys.events: ">"}, count=10)

        async def pending() -> bool:
            samples = await scrape(url)
            return value(samples, "scoreboard_stream_pending_entries", board="default") >= 3

        await wait_for(pending)
    # The metrics server stops with the process.
    with pytest.raises(httpx.ConnectError):
        await scrape(url)
