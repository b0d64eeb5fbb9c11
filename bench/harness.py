"""`scoreboard bench` (make bench): load against a running stack, or one it starts on embedded
defaults, measuring the capacity targets; prints its tables and writes a JSON file.

Phases: seed the population (COPY), CPU per completion (gRPC and REST writes at a fixed rate below
saturation: CPU seconds of every process of the stack, PostgreSQL's backends and Redis included,
divided by the completions accepted), gRPC writes (uniform over the population, then skewed so
the top 10 changes on almost every action), REST writes through the edge, reads, WebSocket
viewers on the edge while skewed gRPC writes run (commit-to-receipt propagation), personal live
rank (bench.rank_phase, issue 18: the ticker's Redis commands and CPU, score change to RankUpdate
for self and overtaken), and finally the nothing-lost checks (outbox drained, consumer caught up,
ledger == totals, Redis == PostgreSQL).

With `--replicas 1 2` the phases run once per N on a stack of N score_service replicas and N
edge processes (ops.devstack's SCOREBOARD_SCORE_REPLICAS / SCOREBOARD_EDGE_PROCESSES), and a
last table sets the throughput of each N side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import redis.asyncio as aioredis

from bench.invariants import Settled, ledger_mismatches, wait_settled
from bench.population import seed
from bench.rank_phase import RankSizes, measure, print_table
from bench.resources import ResourceMonitor, postgres_pids, redis_pid
from bench.stats import summary_ms
from bench.viewers import CommitLog, Fleet, propagation, raise_fd_limit, rss_bytes
from common.auth.service_token import ServiceTokenSource
from common.config import DEFAULT_BOARD, ClientCredentials
from common.errors import Reason, ServiceError, from_rpc_error
from common.grpc_client import call_metadata, open_channel
from common.redis_keys import Keys
from ops.devstack import Stack, read_description, save_service_account, start_stack
from scoreboard.auth.v1 import auth_service_pb2_grpc
from scoreboard.leaderboard.v1 import leaderboard_service_pb2, leaderboard_service_pb2_grpc
from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
ACTION_ID = "bench-hit"
# The further boards the bench action counts on (--boards 3: both), created if missing.
EXTRA_BOARDS = (
    leaderboard_service_pb2.BoardInfo(
        board_id="bench-week",
        name="Bench week",
        reset_schedule="0 0 * * 1",
        time_zone="Europe/Berlin",
    ),
    leaderboard_service_pb2.BoardInfo(board_id="bench-season", name="Bench season"),
)
BENCH_CLIENT = "bench"
BENCH_SCOPES = "admin scores:write leaderboard:read stream:watch"
REST_PASSWORD = "bench-player-password"


DEFAULT_PHASES = (
    "idle",
    "cpu-grpc",
    "cpu-rest",
    "grpc-uniform",
    "grpc-skewed",
    "rest",
    "reads",
    "viewers",
    "rank",
)
# The rows of the CPU table, in the stack's order (process names of ops.devstack, replicas
# folded into their service).
STACK_PROCESSES = (
    "edge",
    "auth_service",
    "score_service",
    "leaderboard_service",
    "stream_service",
    "postgres",
    "redis",
)


@dataclass
class BenchConfig:
    users: int = 1_000_000
    seconds: float = 60.0
    grpc_rate: float = 2000.0
    rest_rate: float = 1200.0
    read_rate: float = 5000.0
    rest_users: int = 1000
    phases: tuple[str, ...] = DEFAULT_PHASES
    viewers: tuple[int, ...] = (1000, 5000, 10000)
    viewer_write_rate: float = 1000.0
    data_dir: Path = ROOT / ".data"
    out_dir: Path = ROOT / ".bench"
    use_running: bool = True
    # The fixed offered rates of the CPU-per-completion phases: below saturation, so the figure
    # is a cost, not a queue.
    cpu_grpc_rate: float = 300.0
    cpu_rest_rate: float = 150.0
    # Stack sizes to run the phases on (N score_service replicas and N edge processes each).
    replicas: tuple[int, ...] = (1,)
    # Load-generator processes per phase (the offered rate is split between them).
    generators: int = 1
    # Boards each completion counts on (issue 17): the default board and up to two more (a
    # weekly board resetting in Berlin, a season board), each with its own ledger row and event.
    boards: int = 3
    # The rank phase (issue 18): ranked players, online rank subscribers, score changes per
    # second, and the ticker's interval.
    rank_players: int = 1_000_000
    rank_subscribers: int = 10_000
    rank_write_rate: float = 500.0
    rank_tick_seconds: float = 3.0


@dataclass
class Target:
    edge_url: str
    addresses: dict[str, str]
    database_url: str
    redis_url: str
    key_prefix: str
    pids: dict[str, list[int]]
    started: Stack | None = None


@dataclass
class Phase:
    name: str
    target_rate: float
    seconds: float
    accepted_per_s: float
    latency: dict[str, float]
    outcomes: dict[str, int]
    throttled: int
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    # CPU milliseconds per accepted completion, by process group, plus "total" (the stack) and
    # "load generator" (apart, never in the total).
    cpu_ms_per_completion: dict[str, float] = field(default_factory=dict)
    replicas: int = 1
    # The idle phase: CPU milliseconds per second of each process group with no load (timers,
    # sweeps, blocking reads), the floor every per-completion figure includes.
    idle_cpu_ms_per_s: dict[str, float] = field(default_factory=dict)


def _target(config: BenchConfig, replicas: int) -> Target:
    use_running = config.use_running and replicas == 1
    description = read_description(config.data_dir) if use_running else None
    if description is not None:
        print(f"bench: using the running stack at {description['edge_url']}")
        stack = None
    else:
        print(
            f"bench: starting a stack on embedded defaults (.bench/stack), {replicas} "
            "score_service replica(s) and edge process(es)"
        )
        env = {k: v for k, v in os.environ.items()}
        env["SCOREBOARD_DATA_DIR"] = str(config.out_dir / "stack")
        env["SCOREBOARD_SCORE_REPLICAS"] = str(replicas)
        env["SCOREBOARD_EDGE_PROCESSES"] = str(replicas)
        # Viewers connect without tokens (one user may hold only a few sockets), and up to
        # 20,000 of them (the hard open-files limit here; raised before the stack starts).
        env.setdefault("SCOREBOARD_WS_ANONYMOUS", "true")
        env.setdefault("SCOREBOARD_WS_MAX_CONNECTIONS", str(max(config.viewers, default=0) + 100))
        env.setdefault("SCOREBOARD_LOG_LEVEL", "WARNING")
        from ops.embedded import free_port

        for name in ("AUTH", "SCORE", "LEADERBOARD", "STREAM", "EDGE"):
            env.setdefault(f"SCOREBOARD_{name}_PORT", str(free_port()))
        stack = start_stack(env, quiet=True)
        description = read_description(stack.data_dir)
        assert description is not None
    pids: dict[str, list[int]] = {}
    for name, pid in description["pids"].items():
        pids.setdefault(name.split(".")[0], []).append(pid)  # score_service.2 -> score_service
    pids["postgres"] = asyncio.run(postgres_pids(description["database_url"]))
    pids["redis"] = asyncio.run(redis_pid(description["redis_url"]))
    return Target(
        edge_url=description["edge_url"],
        addresses=description["addresses"],
        database_url=description["database_url"],
        redis_url=description["redis_url"],
        key_prefix=description["key_prefix"],
        pids=pids,
        started=stack,
    )


def _service_account(target: Target) -> str:
    secret = secrets.token_urlsafe(24)
    env = {**os.environ, "SCOREBOARD_DATABASE_URL": target.database_url}
    save_service_account(env, BENCH_CLIENT, secret, BENCH_SCOPES)
    return secret


async def _boards(target: Target, config: BenchConfig, token: str) -> list[str]:
    """The further boards of the bench action (created when missing)."""
    wanted = EXTRA_BOARDS[: max(0, config.boards - 1)]
    channel = open_channel(target.addresses["leaderboard"])
    board = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
    try:
        for info in wanted:
            try:
                await board.CreateBoard(
                    leaderboard_service_pb2.CreateBoardRequest(board=info),
                    metadata=call_metadata(token),
                )
            except grpc.aio.AioRpcError as exc:
                if from_rpc_error(exc).reason != Reason.BOARD_EXISTS:
                    raise
    finally:
        await channel.close()
    return [info.board_id for info in wanted]


async def _prepare(target: Target, config: BenchConfig, token: str) -> None:
    boards = await _boards(target, config, token)
    print(f"bench: every completion counts on {1 + len(boards)} board(s): default {boards}")
    channel = open_channel(target.addresses["score"])
    score = score_service_pb2_grpc.ScoreServiceStub(channel)
    action = score_service_pb2.Action(
        action_id=ACTION_ID,
        name="Benchmark hit",
        description="Load-test action.",
        base_points=1,
        difficulty_multiplier=1.0,
        daily_limit=100_000,
        active=True,
        board_ids=boards,
    )
    try:
        await score.CreateAction(
            score_service_pb2.CreateActionRequest(action=action), metadata=call_metadata(token)
        )
    except grpc.aio.AioRpcError as exc:
        if from_rpc_error(exc).reason != Reason.ACTION_EXISTS:
            raise
        await score.UpdateAction(
            score_service_pb2.UpdateActionRequest(action=action), metadata=call_metadata(token)
        )
    finally:
        await channel.close()
    seeded = await seed(target.database_url, config.users)
    print(
        f"bench: population {seeded.users:,} users ({seeded.seeded_now:,} seeded now, "
        f"{seeded.seconds:.1f}s)"
    )
    if seeded.seeded_now:
        channel = open_channel(target.addresses["leaderboard"])
        board = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        started = time.monotonic()
        reply = await board.RebuildRanking(
            leaderboard_service_pb2.RebuildRankingRequest(),
            metadata=call_metadata(token),
            timeout=600,
        )
        await channel.close()
        print(
            f"bench: ranking rebuilt with {reply.users:,} users in "
            f"{time.monotonic() - started:.1f}s"
        )


async def _rest_tokens(target: Target, count: int) -> list[str]:
    """Register `count` new players (names unique to this run) and return their access tokens.
    Registering, not logging in: a login that fails counts against the address for 15 minutes."""
    limit = asyncio.Semaphore(8)
    run = secrets.token_hex(3)

    async def one(client: httpx.AsyncClient, index: int) -> str:
        body = {"username": f"benchrest-{run}-{index}", "password": REST_PASSWORD}
        async with limit:
            reply = await client.post("/api/auth/register", json=body)
        reply.raise_for_status()
        token: str = reply.json()["data"]["accessToken"]
        return token

    async with httpx.AsyncClient(base_url=target.edge_url, timeout=60) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(count))))


async def _phase(
    name: str, target: Target, worker_config: dict[str, Any], seconds: float, generators: int = 1
) -> Phase:
    """Run `generators` load-generator processes (the offered rate split between them) while the
    stack's processes are measured."""
    paths, result_files = [], []
    for index in range(generators):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            result_file = handle.name + ".result"
            json.dump(
                {
                    **worker_config,
                    "rate": worker_config["rate"] / generators,
                    "seed": index + 1,
                    "result_file": result_file,
                },
                handle,
            )
            paths.append(handle.name)
            result_files.append(result_file)
    monitor = ResourceMonitor(target.pids)
    monitor.start()
    try:
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.worker", path, cwd=ROOT
            )
            for path in paths
        ]
        codes = [await process.wait() for process in processes]
    finally:
        resources = await monitor.stop()
        for path in paths:
            os.unlink(path)
    if any(codes):
        raise RuntimeError(f"load generator for {name} failed ({codes})")
    results = []
    for result_file in result_files:
        with open(result_file) as handle:  # noqa: ASYNC230 - read once, after the load
            results.append(json.load(handle))
        os.unlink(result_file)
    outcomes: dict[str, int] = {}
    for result in results:
        for outcome, count in result["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    elapsed = max(result["seconds"] for result in results)
    accepted = outcomes.get("ok", 0)
    phase = Phase(
        name=name,
        target_rate=worker_config["rate"],
        seconds=round(elapsed, 1),
        accepted_per_s=round(accepted / max(elapsed, 1e-9), 1),
        latency=summary_ms([x for result in results for x in result["latencies"]]),
        outcomes=outcomes,
        throttled=sum(result["throttled"] for result in results),
        resources=resources,
        cpu_ms_per_completion=_per_completion(
            resources, sum(result.get("cpu_s", 0.0) for result in results), accepted
        ),
    )
    print(
        f"bench: {name}: {phase.accepted_per_s}/s accepted, p99 {phase.latency['p99_ms']} ms, "
        f"{phase.cpu_ms_per_completion.get('total', float('nan'))} ms CPU per completion"
    )
    return phase


async def _idle(target: Target, seconds: float) -> Phase:
    """CPU of the stack with no load at all, per second."""
    monitor = ResourceMonitor(target.pids)
    monitor.start()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    resources = await monitor.stop()
    elapsed = time.monotonic() - started
    idle = {name: round(usage["cpu_s"] * 1000 / elapsed, 2) for name, usage in resources.items()}
    idle["total"] = round(sum(usage["cpu_s"] for usage in resources.values()) * 1000 / elapsed, 2)
    print(f"bench: idle stack: {idle['total']} ms CPU per second")
    return Phase(
        name="idle (no load)",
        target_rate=0,
        seconds=round(elapsed, 1),
        accepted_per_s=0,
        latency=summary_ms([]),
        outcomes={},
        throttled=0,
        resources=resources,
        idle_cpu_ms_per_s=idle,
    )


def _per_completion(
    resources: dict[str, dict[str, float]], generator_cpu_s: float, accepted: int
) -> dict[str, float]:
    """CPU milliseconds per accepted completion of each process group, their total, and the
    load generator's apart."""
    if accepted <= 0:
        return {}
    figures = {
        name: round(usage["cpu_s"] * 1000 / accepted, 3) for name, usage in resources.items()
    }
    figures["total"] = round(
        sum(usage["cpu_s"] for usage in resources.values()) * 1000 / accepted, 3
    )
    figures["load generator"] = round(generator_cpu_s * 1000 / accepted, 3)
    return figures


async def _viewers(
    target: Target, count: int, writes: dict[str, Any]
) -> tuple[Phase, dict[str, Any]]:
    """`count` idle viewers on the edge, then skewed gRPC writes while they watch: propagation
    from commit to receipt, and the edge's memory per idle connection."""
    edge_pid = target.pids["edge"][0]
    ws_url = target.edge_url.replace("http", "ws", 1) + "/ws"
    rss_before = rss_bytes(edge_pid)
    fleet = Fleet(ws_url, count, 1 if count <= 5000 else 2)
    connected = await fleet.open()
    if connected == 0:
        await fleet.close()
        raise RuntimeError(
            "no viewer could connect: the edge must accept anonymous viewers "
            "(SCOREBOARD_WS_ANONYMOUS=true, as make run sets) or run with --own-stack"
        )
    log = CommitLog(target.redis_url, target.key_prefix)
    try:
        await asyncio.sleep(2.0)  # idle connections only
        rss_idle = rss_bytes(edge_pid)
        await log.start()
        phase = await _phase(
            f"gRPC skewed, {count:,} viewers", target, writes, float(writes["seconds"])
        )
        # Every change ranked (an overloaded run lags), then time for the last broadcast to
        # reach everyone: "got last" then counts viewers that missed the final board.
        await _settle(target)
        await asyncio.sleep(2.0)
    finally:
        await log.stop()
        results = await fleet.close()
    seen = propagation(results, log)
    result = {
        "viewers": count,
        "connected": connected,
        "write_rate": writes["rate"],
        "accepted_per_s": phase.accepted_per_s,
        **seen,
        "edge_kb_per_idle_connection": round((rss_idle - rss_before) / max(1, connected) / 1024, 2),
    }
    print(
        f"bench: {count:,} viewers ({connected:,} connected): propagation p50 "
        f"{seen['p50_ms']} ms, p99 {seen['p99_ms']} ms"
    )
    return phase, result


async def _settle(target: Target) -> Settled:
    """Wait until every committed change is relayed and applied (bounded)."""
    redis = aioredis.Redis.from_url(target.redis_url)
    try:
        return await wait_settled(
            target.database_url, redis, Keys(target.key_prefix), DEFAULT_BOARD
        )
    finally:
        await redis.aclose()


def run(config: BenchConfig) -> dict[str, Any]:
    if "viewers" in config.phases:
        raise_fd_limit()  # before the stack starts: the edge inherits it
    runs = []
    for replicas in config.replicas:
        target = _target(config, replicas)
        try:
            runs.append(asyncio.run(_run(config, target, replicas)))
        finally:
            if target.started is not None:
                target.started.stop()
    first = runs[0]
    report = {
        "machine": _machine(),
        "command": " ".join(sys.argv),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "phases": [phase for one in runs for phase in one["phases"]],
        "viewers": [seen for one in runs for seen in one["viewers"]],
        "rank": [rank for one in runs for rank in one["rank"]],
        "checks": {
            **first["checks"],
            "nothing_lost": all(one["checks"]["nothing_lost"] for one in runs),
        },
        "runs": runs,
    }
    _print(report)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    out = config.out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"bench: results in {out}")
    return report


async def _run(config: BenchConfig, target: Target, replicas: int) -> dict[str, Any]:
    secret = _service_account(target)
    auth_channel = open_channel(target.addresses["auth"])
    tokens = ServiceTokenSource(
        auth_service_pb2_grpc.AuthServiceStub(auth_channel), ClientCredentials(BENCH_CLIENT, secret)
    )
    token = await tokens.token()
    await auth_channel.close()
    await _prepare(target, config, token)
    phases: list[Phase] = []
    viewer_runs: list[dict[str, Any]] = []
    rank_runs: list[dict[str, Any]] = []
    base = {
        "users": config.users,
        "seconds": config.seconds,
        "action_id": ACTION_ID,
    }
    suffix = "" if replicas == 1 else f" [N={replicas}]"
    rest_tokens: list[str] = []

    async def players() -> list[str]:
        if not rest_tokens:
            rest_tokens.extend(await _rest_tokens(target, config.rest_users))
        return rest_tokens

    def grpc_writes(mode: str, rate: float) -> dict[str, Any]:
        return {
            **base,
            "kind": "grpc-writes",
            "mode": mode,
            "rate": rate,
            "score_addr": target.addresses["score"],
            "token": token,
        }

    async def rest_writes(rate: float) -> dict[str, Any]:
        return {
            **base,
            "kind": "rest-writes",
            "mode": "uniform",
            "rate": rate,
            "edge_url": target.edge_url,
            "tokens": await players(),
            "connections": 128,
        }

    for name in config.phases:
        if name == "idle":
            phases.append(await _idle(target, min(config.seconds, 10.0)))
        elif name == "cpu-grpc":
            writes = grpc_writes("uniform", config.cpu_grpc_rate)
            phases.append(
                await _phase(
                    "CPU, gRPC writes" + suffix, target, writes, config.seconds, config.generators
                )
            )
        elif name == "cpu-rest":
            writes = await rest_writes(config.cpu_rest_rate)
            phases.append(
                await _phase(
                    "CPU, REST writes" + suffix, target, writes, config.seconds, config.generators
                )
            )
        elif name in ("grpc-uniform", "grpc-skewed"):
            mode = name.split("-")[1]
            phases.append(
                await _phase(
                    f"gRPC writes ({mode})" + suffix,
                    target,
                    grpc_writes(mode, config.grpc_rate),
                    config.seconds,
                    config.generators,
                )
            )
        elif name == "rest":
            phases.append(
                await _phase(
                    "REST writes (uniform)" + suffix,
                    target,
                    await rest_writes(config.rest_rate),
                    config.seconds,
                    config.generators,
                )
            )
        elif name == "reads":
            phases.append(
                await _phase(
                    "GET /api/leaderboard" + suffix,
                    target,
                    {
                        **base,
                        "kind": "reads",
                        "mode": "uniform",
                        "rate": config.read_rate,
                        "seconds": min(config.seconds, 30),
                        "edge_url": target.edge_url,
                        "connections": 64,
                    },
                    config.seconds,
                    config.generators,
                )
            )
        elif name == "viewers":
            for count in config.viewers:
                phase, seen = await _viewers(
                    target,
                    count,
                    {
                        **grpc_writes("skewed", config.viewer_write_rate),
                        "seconds": min(config.seconds, 30),
                    },
                )
                phase.name += suffix
                phases.append(phase)
                viewer_runs.append({**seen, "replicas": replicas})
        elif name == "rank":
            sizes = RankSizes(
                players=config.rank_players,
                subscribers=config.rank_subscribers,
                write_rate=config.rank_write_rate,
                tick_seconds=config.rank_tick_seconds,
                seconds=min(config.seconds, 30.0),
            )
            rank_runs.append({**await measure(target.redis_url, sizes), "replicas": replicas})
        else:
            raise ValueError(f"unknown phase {name!r}")
    for phase in phases:
        phase.replicas = replicas
    settled = await _settle(target)
    checks = await _checks(target, token)
    checks["settle_seconds"] = settled.seconds
    checks["outbox_rows_left"] = settled.outbox_rows
    checks["events_unapplied"] = settled.pending_events
    return {
        "replicas": replicas,
        "phases": [asdict(p) for p in phases],
        "viewers": viewer_runs,
        "rank": rank_runs,
        "checks": checks,
    }


async def _checks(target: Target, token: str) -> dict[str, Any]:
    mismatched_ledger = await ledger_mismatches(target.database_url)
    channel = open_channel(target.addresses["leaderboard"])
    try:
        board = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        reply = await board.ReconcileRanking(
            leaderboard_service_pb2.ReconcileRankingRequest(),
            metadata=call_metadata(token),
            timeout=600,
        )
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from None
    finally:
        await channel.close()
    return {
        "ledger_mismatches": mismatched_ledger,
        "ranking_mismatches": reply.mismatched,
        "users_in_database": reply.users_in_database,
        "users_in_ranking": reply.users_in_ranking,
        "nothing_lost": mismatched_ledger == 0 and reply.mismatched == 0,
    }


def _machine() -> dict[str, Any]:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _print(report: dict[str, Any]) -> None:
    print()
    print(
        f"{'phase':<32}{'target/s':>9}{'accepted/s':>12}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}  other outcomes"
    )
    for phase in report["phases"]:
        other = {k: v for k, v in phase["outcomes"].items() if k != "ok"}
        lat = phase["latency"]
        print(
            f"{phase['name']:<32}{phase['target_rate']:>9.0f}{phase['accepted_per_s']:>12.1f}"
            f"{lat['p50_ms']:>9}{lat['p95_ms']:>9}{lat['p99_ms']:>9}{lat['max_ms']:>9}  "
            f"{other or ''}"
        )
    _print_cpu(report["phases"])
    _print_scaling(report["phases"])
    if report["viewers"]:
        print()
        print(
            f"{'viewers':>8}{'N':>3}{'connected':>10}{'writes/s':>9}{'changes':>8}{'p50 ms':>8}"
            f"{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}{'got last':>9}{'KB/idle conn':>13}"
        )
        for v in report["viewers"]:
            print(
                f"{v['viewers']:>8}{v.get('replicas', 1):>3}{v['connected']:>10}"
                f"{v['accepted_per_s']:>9.0f}"
                f"{v['snapshots_published']:>8}{v['p50_ms']:>8}{v['p95_ms']:>8}{v['p99_ms']:>8}"
                f"{v['max_ms']:>8}{v['viewers_with_final_snapshot']:>9}"
                f"{v['edge_kb_per_idle_connection']:>13}"
            )
    print_table(report["rank"])
    print()
    checks = report["checks"]
    print(
        f"nothing lost: {checks['nothing_lost']} (ledger mismatches "
        f"{checks['ledger_mismatches']}, ranking mismatches {checks['ranking_mismatches']}, "
        f"{checks['users_in_ranking']:,} ranked)"
    )
    print(
        f"machine: {report['machine']['cpus']} CPUs, {report['machine']['memory_gb']} GB, "
        f"Python {report['machine']['python']}; command: {report['command']}"
    )


def _print_cpu(phases: list[dict[str, Any]]) -> None:
    """CPU ms per accepted completion: one row per process of the stack, one column per phase;
    the total is the stack's, the load generator is reported apart."""
    measured = [p for p in phases if p["cpu_ms_per_completion"]]
    if not measured:
        return
    idle: dict[str, float] = next(
        (p["idle_cpu_ms_per_s"] for p in phases if p.get("idle_cpu_ms_per_s")), {}
    )
    print()
    print("CPU ms per accepted completion (psutil user+system of every process, / accepted)")
    width = max(14, *(len(p["name"]) + 2 for p in measured))
    print(
        f"{'process':<22}"
        + "".join(f"{p['name']:>{width}}" for p in measured)
        + (f"{'idle ms/s':>12}" if idle else "")
    )
    rows = [
        *STACK_PROCESSES,
        *sorted({k for p in measured for k in p["resources"]} - set(STACK_PROCESSES)),
        "total",
        "load generator",
    ]
    for row in rows:
        cells = []
        for phase in measured:
            value = phase["cpu_ms_per_completion"].get(row)
            cells.append(f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}")
        label = "PostgreSQL (all)" if row == "postgres" else row
        floor = f"{idle[row]:>12.2f}" if row in idle else ("" if not idle else f"{'-':>12}")
        print(f"{label:<22}" + "".join(cells) + floor)
    print(f"{'accepted/s':<22}" + "".join(f"{p['accepted_per_s']:>{width}.1f}" for p in measured))
    if idle:
        # What a completion costs above the idle floor: (CPU - idle rate x seconds) / accepted.
        net = []
        for phase in measured:
            accepted = phase["accepted_per_s"] * phase["seconds"]
            floor_ms = idle.get("total", 0.0) * phase["seconds"]
            total_ms = phase["cpu_ms_per_completion"]["total"] * accepted
            net.append((total_ms - floor_ms) / accepted if accepted else float("nan"))
        print(f"{'total above idle':<22}" + "".join(f"{n:>{width}.3f}" for n in net))


def _print_scaling(phases: list[dict[str, Any]]) -> None:
    """Throughput of the same phase on N = 1, 2, ... replicas, side by side."""
    sizes = sorted({p["replicas"] for p in phases})
    if len(sizes) < 2:
        return
    by_name: dict[str, dict[int, dict[str, Any]]] = {}
    for phase in phases:
        base = phase["name"].split(" [N=")[0]
        by_name.setdefault(base, {})[phase["replicas"]] = phase
    print()
    print("scaling out: accepted/s (p99 ms) with N score_service replicas and N edge processes")
    print(f"{'phase':<32}" + "".join(f"{'N=' + str(n):>20}" for n in sizes))
    for base, runs in by_name.items():
        cells = []
        for n in sizes:
            run_n = runs.get(n)
            cell = f"{run_n['accepted_per_s']:.1f} ({run_n['latency']['p99_ms']})" if run_n else "-"
            cells.append(f"{cell:>20}")
        print(f"{base:<32}" + "".join(cells))


__all__ = ["BenchConfig", "ServiceError", "run"]
