"""`python -m bench.faults` (make faults): every fault scenario against the real processes of
the stack under a bounded load of completions and viewers; prints one table, and exits 1 when
an invariant broke.

    .venv/bin/python -m bench.faults
    .venv/bin/python -m bench.faults --scenarios redis-pause kill-score --pause 3 --rate 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.faults.report import details, table
from bench.faults.rig import Rig, open_rig
from bench.faults.scenarios import KEYS, Scenario
from bench.faults.suite import Options, Outcome, Suite


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=sorted(KEYS), default=list(KEYS), metavar="NAME"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="completions per second")
    parser.add_argument("--players", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--pause", type=float, default=10.0, help="seconds a fault lasts")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds of load after a fault")
    parser.add_argument(
        "--database-url",
        help="a database this run may own (default: embedded PostgreSQL; needed to restart it)",
    )
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    return parser


def _bounded(args: argparse.Namespace) -> Options:
    """Bounded in count and time, whatever is asked: a suite, not a stress test."""
    return Options(
        rate=min(max(args.rate, 1.0), 200.0),
        players=min(max(args.players, 1), 200),
        viewers=min(max(args.viewers, 1), 200),
        pause_seconds=min(max(args.pause, 0.5), 60.0),
        tail_seconds=min(max(args.tail, 1.0), 60.0),
    )


async def _run(rig: Rig, options: Options, scenarios: list[Scenario]) -> list[Outcome]:
    suite = Suite(rig, options)
    outcomes = []
    try:
        await suite.setup()
        for index, scenario in enumerate(scenarios):
            print(f"[{time.strftime('%H:%M:%S')}] {scenario.name}…", flush=True)
            outcome = await suite.run(index, scenario)
            outcomes.append(outcome)
            verdict = "pass" if outcome.passed else "FAIL: " + "; ".join(outcome.violations)
            print(f"    {verdict}", flush=True)
    finally:
        await suite.close()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = _bounded(args)
    scenarios = [KEYS[name] for name in dict.fromkeys(args.scenarios)]
    if args.database_url:
        skipped = [s.name for s in scenarios if s.needs_own_postgres]
        scenarios = [s for s in scenarios if not s.needs_own_postgres]
        for name in skipped:
            print(f"skipped: {name} (needs the embedded PostgreSQL)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        started = time.monotonic()
        # The stack starts on this thread, which lives for the whole run.
        try:
            rig = open_rig(Path(tmp), args.database_url)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            print(f"the stack did not start: {exc}", file=sys.stderr)
            for log in sorted((Path(tmp) / "stack" / "logs").glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-5:]
                print(f"--- {log.name}", *tail, sep="\n", file=sys.stderr)
            return 2
        try:
            outcomes = asyncio.run(_run(rig, options, scenarios))
        finally:
            rig.stop()
            if args.logs:
                shutil.copytree(Path(tmp) / "stack" / "logs", args.logs, dirs_exist_ok=True)
    print()
    print(table(outcomes))
    print()
    print(details(outcomes))
    print(f"\n{len(outcomes)} scenarios in {time.monotonic() - started:.0f} s", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(o), "passed": o.passed} for o in outcomes], indent=2, default=str)
        )
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
