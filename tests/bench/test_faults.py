"""The CI-sized subset of the fault suite (`make faults` runs all of it): `python -m bench.faults`
at a tiny scale against a stack of real processes on a Redis of its own (the run's shared Redis
is never paused) and a database of this run. Redis paused, score_service SIGKILLed and
restarted, Redis restarted empty: every request answered within its deadline by success or
503, no acknowledged completion lost or written twice, ledger == totals, Redis == PostgreSQL,
every viewer on the final board."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import Databases

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("redis-pause", "kill-score", "redis-empty")
VIEWERS = 4


@pytest.mark.slow
async def test_faults_lose_nothing_double_nothing_and_hang_nothing(
    databases: Databases, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    out = tmp_path / "faults.json"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.faults", "--scenarios", *SCENARIOS),
        *("--database-url", await databases.new(), "--json", str(out)),
        *("--pause", "3", "--tail", "2", "--rate", "8", "--players", "4"),
        *("--viewers", str(VIEWERS), "--logs", str(tmp_path / "logs")),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    text = output.decode(errors="replace")
    outcomes: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    assert [o["scenario"] for o in outcomes] == [
        "Redis paused",
        "score_service killed",
        "Redis restarted empty",
    ], text[-3000:]
    for outcome in outcomes:
        assert outcome["violations"] == [], (outcome, text[-3000:])
        assert outcome["requests"] > 0
        assert outcome["answered"] == outcome["requests"]  # no hang
        assert set(outcome["errors"]) <= {"503 UNAVAILABLE"}
        assert outcome["lost"] == 0 and outcome["doubled"] == 0
        assert outcome["ledger_equals_totals"] and outcome["redis_equals_postgres"]
        assert outcome["viewers_on_final_board"] == VIEWERS
        assert outcome["recovery_seconds"] is not None
    assert process.returncode == 0, text[-3000:]
    assert "| scenario | requests | answered | errors by code |" in text
