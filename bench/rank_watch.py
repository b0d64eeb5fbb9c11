"""`python -m bench.rank_watch`: the cost of personal live rank (issue 18, DESIGN decision 12).

Against a Redis server (SCOREBOARD_REDIS_URL or --redis-url; a key prefix of its own, deleted
afterwards), with the real scripts and the real stream_service RankHub in this process:
- seeds --players ranked players (default 1,000,000);
- opens --subscribers rank watches (default 10,000) on random players;
- applies --write-rate score changes per second (default 500) with the consumer's apply script
  and rank channel, a share of them by subscribed players (so SELF and OVERTAKEN happen);
- runs the ticker every --tick-seconds.
It reports the ticker's Redis commands per second (counted by its script) and its CPU (this
thread's CPU time during its passes), Redis's own CPU, and p50/p99 from a score change (the
apply call) to the subscriber's RankUpdate leaving the hub, for SELF and OVERTAKEN. Not
included: the outbox relay and stream hops before the apply script (measured by `make bench`),
and the gRPC and WebSocket hops after the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from common.redis_keys import BoardKeys, Keys
from common.redis_values import encode_user_state, ranking_member, ranking_score, reached_key
from leaderboard_service.scripts import Scripts
from scoreboard.stream.v1 import stream_service_pb2 as pb
from stream_service.config import RankSettings
from stream_service.rank_hub import RankHub, RankWatch

SEED_CHUNK = 10_000


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _seed(
    redis: aioredis.Redis, keys: BoardKeys, players: int
) -> tuple[list[str], dict[str, int]]:
    users = [str(uuid.uuid4()) for _ in range(players)]
    totals: dict[str, int] = {}
    base = time.time_ns() // 1000 - 10**9
    for start in range(0, players, SEED_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            members: dict[Any, Any] = {}
            states: dict[Any, Any] = {}
            for index in range(start, min(players, start + SEED_CHUNK)):
                user = users[index]
                total = random.randint(0, players * 10)
                totals[user] = total
                members[ranking_member(user, base + index)] = ranking_score(total)
                states[user] = encode_user_state(1, base + index, False, f"p{index}")
            pipe.zadd(keys.ranking, members)
            pipe.hset(keys.users, mapping=states)
            await pipe.execute()
    await redis.set(keys.ready, "1")
    return users, totals


async def _drain(watch: RankWatch, latencies: dict[str, list[float]]) -> None:
    while True:
        update = await watch.next()
        if update is None:
            return
        if update.HasField("change_time"):
            change_us = update.change_time.seconds * 1_000_000 + update.change_time.nanos // 1000
            name = {pb.RANK_REASON_SELF: "self", pb.RANK_REASON_OVERTAKEN: "overtaken"}.get(
                update.reason, "threshold"
            )
            latencies[name].append(time.time() - change_us / 1e6)


async def _writer(
    redis: aioredis.Redis,
    keys: BoardKeys,
    users: list[str],
    watched: list[str],
    totals: dict[str, int],
    *,
    rate: float,
    seconds: float,
    watched_share: float,
) -> int:
    scripts = Scripts(redis)
    versions: dict[str, int] = {}
    interval = 0.02
    per_batch = max(1, round(rate * interval))
    written = 0
    ends = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < ends:
        now_us = time.time_ns() // 1000
        events: list[list[str]] = []
        for index in range(per_batch):
            pool = watched if random.random() < watched_share else users
            user = random.choice(pool)
            version = versions.get(user, 1) + 1
            versions[user] = version
            totals[user] += random.randint(1, 50)
            events.append(
                [
                    user,
                    str(version),
                    str(ranking_score(totals[user])),
                    reached_key(now_us + index),
                    "0",
                    "bench",
                    str(now_us),
                ]
            )
        await scripts.apply_events(keys, events, now_us=now_us, group="bench")
        written += per_batch
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return written


async def _redis_cpu(redis: aioredis.Redis) -> float:
    info: Any = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis = aioredis.Redis.from_url(args.redis_url)
    keys = Keys(f"bench-rank-{secrets.token_hex(3)}:").board("default")
    try:
        started = time.monotonic()
        users, totals = await _seed(redis, keys, args.players)
        seeded = time.monotonic() - started
        settings = RankSettings(
            tick_seconds=0,  # ticked here, to measure each pass
            min_interval_seconds=args.min_interval,
            percentile_min_players=100,
        )
        hub = RankHub(redis, keys, settings)
        listener = asyncio.create_task(hub.run())
        await asyncio.wait_for(hub.subscribed.wait(), 10)
        watched = random.sample(users, min(args.subscribers, len(users)))
        latencies: dict[str, list[float]] = {"self": [], "overtaken": [], "threshold": []}
        watches = [await hub.watch(user) for user in watched]
        drains = [asyncio.create_task(_drain(w, latencies)) for w in watches]
        await asyncio.sleep(0.5)
        for values in latencies.values():
            values.clear()

        passes: list[tuple[float, float, int]] = []  # wall s, cpu s, commands

        async def ticker() -> None:
            while True:
                await asyncio.sleep(args.tick_seconds)
                before_cmds = hub.ticker_commands
                wall, cpu = time.perf_counter(), time.thread_time()
                await hub.tick()
                passes.append(
                    (
                        time.perf_counter() - wall,
                        time.thread_time() - cpu,
                        hub.ticker_commands - before_cmds,
                    )
                )

        cpu_before = await _redis_cpu(redis)
        ticking = asyncio.create_task(ticker())
        written = await _writer(
            redis,
            keys,
            users,
            watched,
            totals,
            rate=args.write_rate,
            seconds=args.seconds,
            watched_share=args.watched_share,
        )
        await asyncio.sleep(1.0)
        redis_cpu = await _redis_cpu(redis) - cpu_before
        for task in (ticking, listener, *drains):
            task.cancel()
        hub.close()
        for task in (ticking, listener, *drains):
            with contextlib.suppress(asyncio.CancelledError):
                await task

        commands = sum(p[2] for p in passes)
        report: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "players": args.players,
            "subscribers": len(watched),
            "write_rate_offered": args.write_rate,
            "writes": written,
            "seconds": args.seconds,
            "seed_seconds": round(seeded, 1),
            "tick_seconds": args.tick_seconds,
            "ticker_passes": len(passes),
            "ticker_pass_wall_ms_p50": round(
                1000 * (_quantile([p[0] for p in passes], 0.5) or 0), 1
            ),
            "ticker_pass_cpu_ms_mean": round(
                1000 * sum(p[1] for p in passes) / max(1, len(passes)), 1
            ),
            "ticker_cpu_share_of_a_core": round(
                sum(p[1] for p in passes) / max(1e-9, len(passes) * args.tick_seconds), 4
            ),
            "ticker_redis_commands_per_pass": round(commands / max(1, len(passes))),
            "ticker_redis_commands_per_second": round(
                commands / max(1e-9, len(passes) * args.tick_seconds)
            ),
            "redis_cpu_share_of_a_core": round(redis_cpu / args.seconds, 3),
        }
        for name in ("self", "overtaken"):
            values = latencies[name]
            report[f"{name}_updates"] = len(values)
            for q in (0.5, 0.99):
                value = _quantile(values, q)
                report[f"{name}_p{round(q * 100)}_ms"] = (
                    None if value is None else round(1000 * value, 2)
                )
        return report
    finally:
        cursor = 0
        while True:
            cursor, found = await redis.scan(cursor, match=f"{keys.prefix}*", count=1000)
            if found:
                await redis.delete(*found)
            if cursor == 0:
                break
        await redis.aclose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rank_watch", description=__doc__)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("SCOREBOARD_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--players", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--write-rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tick-seconds", type=float, default=3.0)
    parser.add_argument("--min-interval", type=float, default=1.0)
    parser.add_argument(
        "--watched-share",
        type=float,
        default=0.2,
        help="share of the writes made by subscribed players",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
