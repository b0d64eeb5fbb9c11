"""A load-generator process: `python -m bench.worker <config.json>` runs one kind of load and
prints its result as JSON on stdout.

Kinds: grpc-writes (CompleteAction over gRPC as a game server), rest-writes (POST
/api/actions/complete as players), reads (GET /api/leaderboard and user ranks).
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson

from bench.http import HttpPool
from bench.load import LoadResult, run_open_loop
from bench.population import CONTENDERS, user_id
from common.errors import from_rpc_error
from common.grpc_client import call_metadata, open_channel
from common.lifecycle import run_main
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc


def _picker(config: dict[str, Any]) -> Any:
    rng = random.Random(config.get("seed", 1))
    users = int(config["users"])
    if config["mode"] == "skewed":
        return lambda: user_id(rng.randrange(min(CONTENDERS, users)))
    return lambda: user_id(rng.randrange(users))


async def grpc_writes(config: dict[str, Any]) -> LoadResult:
    channels = [open_channel(config["score_addr"]) for _ in range(config.get("channels", 4))]
    stubs = [score_service_pb2_grpc.ScoreServiceStub(c) for c in channels]
    metadata = call_metadata(config["token"])
    pick = _picker(config)

    async def call(n: int) -> str:
        try:
            await stubs[n % len(stubs)].CompleteAction(
                score_service_pb2.CompleteActionRequest(
                    action_id=config["action_id"], user_id=pick()
                ),
                metadata=metadata,
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            return from_rpc_error(exc).reason
        return "ok"

    try:
        return await run_open_loop(
            call,
            rate=config["rate"],
            seconds=config["seconds"],
            max_in_flight=config.get("max_in_flight", 256),
        )
    finally:
        for channel in channels:
            await channel.close()


async def rest_writes(config: dict[str, Any]) -> LoadResult:
    pool = HttpPool(config["edge_url"], config.get("connections", 64))
    tokens: list[str] = config["tokens"]
    body = orjson.dumps({"actionId": config["action_id"]})
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]

    async def call(n: int) -> str:
        reply = await pool.request(
            "POST", "/api/actions/complete", body=body, headers=headers[n % len(headers)]
        )
        if reply.status == 200:
            return "ok"
        try:
            return str(orjson.loads(reply.body).get("code", reply.status))
        except orjson.JSONDecodeError:
            return str(reply.status)

    return await _run_over(pool, call, config)


async def reads(config: dict[str, Any]) -> LoadResult:
    pool = HttpPool(config["edge_url"], config.get("connections", 64))
    token = config.get("token")
    pick = _picker({**config, "mode": "uniform"})
    rank_share = float(config.get("rank_share", 0.0))
    rng = random.Random(7)

    async def call(n: int) -> str:
        if token and rng.random() < rank_share:
            reply = await pool.request(
                "GET",
                f"/api/leaderboard/user/{pick()}",
                headers={"Authorization": f"Bearer {token}"},
            )
        else:
            reply = await pool.request("GET", "/api/leaderboard")
        return "ok" if reply.status == 200 else str(reply.status)

    return await _run_over(pool, call, config)


async def _run_over(
    pool: HttpPool, call: Callable[[int], Awaitable[str]], config: dict[str, Any]
) -> LoadResult:
    """The open loop of `call`s, as many in flight at most as the pool has connections; the pool
    is closed at the end."""
    try:
        return await run_open_loop(
            call,
            rate=config["rate"],
            seconds=config["seconds"],
            max_in_flight=config.get("connections", 64),
        )
    finally:
        await pool.close()


KINDS = {"grpc-writes": grpc_writes, "rest-writes": rest_writes, "reads": reads}


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    results: list[LoadResult] = []

    async def main_task() -> None:
        results.append(await KINDS[config["kind"]](config))

    run_main(main_task())
    result = results[0]
    Path(config["result_file"]).write_text(
        json.dumps(
            {
                "started": result.started,
                # This process's own CPU (every thread, gRPC's included): reported apart.
                "cpu_s": sum(os.times()[:2]),
                "seconds": result.seconds,
                "throttled": result.throttled,
                "outcomes": dict(result.outcomes),
                "latencies": result.latencies,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
