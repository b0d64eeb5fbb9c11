"""`make run` scaled out on one machine (issue 15): SCOREBOARD_SCORE_REPLICAS starts that many
score_service processes, each on its own port, and hands every client the list of them (round
robin per call); SCOREBOARD_EDGE_PROCESSES starts that many edges listening on the one edge port
(SO_REUSEPORT), each serving requests.

The stack runs as `python -m ops run` in a process of its own, as a user starts it: forking
children from this test process, where gRPC threads run, can crash a child before its exec."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.grpc_client import open_channel
from ops.devstack import read_description
from ops.embedded import free_port
from tests.support.servers import Databases

ROOT = Path(__file__).resolve().parents[2]


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
    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        "run",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        description = await _started(runner, tmp_path)
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
        async with httpx.AsyncClient(base_url=description["edge_url"]) as client:
            for _ in range(20):
                reply = await client.get("/healthz", headers={"Connection": "close"})
                assert reply.status_code == 200
                assert reply.json()["liveStream"] is True
    finally:
        if runner.returncode is None:
            runner.send_signal(signal.SIGTERM)
        await asyncio.wait_for(runner.communicate(), timeout=60)


async def _started(runner: asyncio.subprocess.Process, data_dir: Path) -> dict[str, Any]:
    """The stack's description, once `ops run` has written it (every process healthy)."""
    deadline = asyncio.get_running_loop().time() + 180
    while asyncio.get_running_loop().time() < deadline:
        description = read_description(data_dir)
        if description is not None:
            return description
        if runner.returncode is not None:
            _, err = await runner.communicate()
            raise AssertionError(f"ops run exited with {runner.returncode}: {err.decode()[-2000:]}")
        await asyncio.sleep(0.2)
    raise AssertionError("the stack did not start within 180 s")
