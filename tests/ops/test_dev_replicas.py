"""`make run` scaled out on one machine (issue 15): SCOREBOARD_SCORE_REPLICAS starts that many
score_service processes, each on its own port, and hands every client the list of them (round
robin per call); SCOREBOARD_EDGE_PROCESSES starts that many edges listening on the one edge port
(SO_REUSEPORT), each serving requests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.grpc_client import open_channel
from ops.devstack import read_description, start_stack
from ops.embedded import free_port
from tests.support.servers import Databases


def _listening_ports(pid: int) -> set[int]:
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.mark.slow
async def test_two_score_replicas_and_two_edges_serve(
    databases: Databases, redis_url: str, run_prefix: str, tmp_path: Path
) -> None:
    edge_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        SCOREBOARD_DATA_DIR=str(tmp_path),
        SCOREBOARD_DATABASE_URL=await databases.new(),
        SCOREBOARD_REDIS_URL=redis_url,
        SCOREBOARD_KEY_PREFIX=f"{run_prefix}replicas:",
        SCOREBOARD_LOG_LEVEL="WARNING",
        SCOREBOARD_SCORE_REPLICAS="2",
        SCOREBOARD_EDGE_PROCESSES="2",
        SCOREBOARD_EDGE_PORT=str(edge_port),
        **{f"SCOREBOARD_{n}_PORT": str(free_port()) for n in ("AUTH", "LEADERBOARD", "STREAM")},
        SCOREBOARD_SCORE_PORT=str(free_port()),
    )
    stack = await asyncio.to_thread(start_stack, env, quiet=True)
    try:
        description = read_description(tmp_path)
        assert description is not None
        pids = description["pids"]
        assert {"score_service", "score_service.2", "edge", "edge.2"} <= set(pids)
        target = description["addresses"]["score"]
        assert target.startswith("ipv4:")
        replicas = target.removeprefix("ipv4:").split(",")
        assert len(replicas) == 2
        # Each replica is its own process on its own port, and serves.
        for name, address in zip(("score_service", "score_service.2"), replicas, strict=True):
            assert int(address.rsplit(":", 1)[1]) in _listening_ports(pids[name])
            channel = open_channel(address)
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            finally:
                await channel.close()
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # Both edges listen on the one port, and requests get answers.
        assert edge_port in _listening_ports(pids["edge"])
        assert edge_port in _listening_ports(pids["edge.2"])
        async with httpx.AsyncClient(base_url=stack.edge_url) as client:
            for _ in range(20):
                reply = await client.get("/healthz", headers={"Connection": "close"})
                assert reply.status_code == 200
                assert reply.json()["liveStream"] is True
    finally:
        await asyncio.to_thread(stack.stop)
