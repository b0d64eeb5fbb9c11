"""`python -m bench` (make bench) end to end at a tiny scale: every phase runs against a stack the
harness starts itself (on this run's database and key prefix), the report holds every phase, the
viewers saw the final board, the personal-rank phase measured its ticker and its updates, and the
nothing-lost checks pass."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import build_parser
from tests.support.servers import Databases

ROOT = Path(__file__).resolve().parents[2]
VIEWERS = 20
RANK_PLAYERS = 2000
RANK_SUBSCRIBERS = 200


def _report(folder: Path) -> dict[str, Any]:
    [result] = folder.glob("bench-*.json")
    report: dict[str, Any] = json.loads(result.read_text())
    return report


@pytest.mark.slow
async def test_bench_runs_every_phase_and_loses_nothing(
    databases: Databases, redis_url: str, run_prefix: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        SCOREBOARD_DATABASE_URL=await databases.new(),
        SCOREBOARD_REDIS_URL=redis_url,
        SCOREBOARD_KEY_PREFIX=f"{run_prefix}bench:",
    )
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench", "--own-stack"),
        *("--out-dir", str(tmp_path), "--users", "3000", "--seconds", "2"),
        *("--grpc-rate", "40", "--rest-rate", "20", "--read-rate", "50", "--rest-users", "4"),
        *("--cpu-grpc-rate", "40", "--cpu-rest-rate", "20"),
        *("--viewers", str(VIEWERS), "--viewer-write-rate", "20"),
        *("--rank-players", str(RANK_PLAYERS), "--rank-subscribers", str(RANK_SUBSCRIBERS)),
        *("--rank-write-rate", "100", "--rank-tick-seconds", "0.5"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-3000:]
    assert "nothing lost: True" in text

    report = await asyncio.to_thread(_report, tmp_path)
    phases = {p["name"]: p for p in report["phases"]}
    idle = phases.pop("idle (no load)")
    assert idle["idle_cpu_ms_per_s"]["total"] > 0
    assert set(phases) == {
        "CPU, gRPC writes",
        "CPU, REST writes",
        "gRPC writes (uniform)",
        "gRPC writes (skewed)",
        "REST writes (uniform)",
        "GET /api/leaderboard",
        f"gRPC skewed, {VIEWERS} viewers",
    }
    for phase in phases.values():
        assert phase["outcomes"].get("ok", 0) > 0, phase
        assert set(phase["latency"]) == {"p50_ms", "p95_ms", "p99_ms", "max_ms"}
        assert phase["resources"]["score_service"]["cpu_s"] >= 0
        # CPU per completion of every process of the stack (PostgreSQL and Redis found from the
        # servers themselves), their total, and the load generator apart.
        cpu = phase["cpu_ms_per_completion"]
        for group in ("edge", "score_service", "postgres", "redis", "load generator"):
            assert cpu[group] >= 0, (group, cpu)
        stack = sum(v for k, v in cpu.items() if k not in ("total", "load generator"))
        assert cpu["total"] == pytest.approx(stack, abs=0.01)
        assert cpu["load generator"] > 0
    assert "CPU ms per accepted completion" in text
    [viewers] = report["viewers"]
    assert viewers["connected"] == VIEWERS
    assert viewers["snapshots_published"] > 0
    assert viewers["viewers_with_final_snapshot"] == VIEWERS
    assert viewers["backwards"] == 0
    # The rank phase (issue 18): its own figures, in the report and the printed table.
    [rank] = report["rank"]
    assert (rank["players"], rank["subscribers"]) == (RANK_PLAYERS, RANK_SUBSCRIBERS)
    assert rank["writes"] > 0 and rank["ticker_passes"] > 0
    assert rank["ticker_redis_commands_per_second"] > 0
    assert rank["ticker_cpu_share_of_a_core"] >= 0 and rank["redis_cpu_share_of_a_core"] >= 0
    assert rank["self_updates"] > 0 and rank["self_p99_ms"] >= rank["self_p50_ms"] >= 0
    assert "personal live rank" in text
    checks = report["checks"]
    assert checks["nothing_lost"] is True
    assert checks["ledger_mismatches"] == 0 and checks["ranking_mismatches"] == 0
    assert checks["users_in_ranking"] == checks["users_in_database"] >= 3000
    assert report["machine"]["cpus"] >= 1


def test_the_rank_phase_defaults_to_the_sizes_of_issue_18() -> None:
    """1,000,000 ranked players, 10,000 online subscribers, 500 writes/s, in `make bench`."""
    args = build_parser().parse_args([])
    assert "rank" in args.phases.split(",")
    assert (args.rank_players, args.rank_subscribers, args.rank_write_rate) == (
        1_000_000,
        10_000,
        500.0,
    )
