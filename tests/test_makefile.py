"""Every task target in the Makefile is declared .PHONY, so a file or directory that happens to
share its name (a `bench-cpu` results file, say) never makes `make <target>` report "up to date"
and skip the work. The targets are read from make's own database, not by parsing the file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _database() -> list[str]:
    """make's printed rule database for the project Makefile (no builtin rules or variables)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # -q with the empty target ":" runs nothing; -p prints the database whatever the exit code.
    done = subprocess.run(
        [make, "-pRrq", "-f", "Makefile", ":"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.splitlines()


def _rules(lines: list[str]) -> dict[str, str]:
    """Each target make knows, with its prerequisites, leaving out the files it only mentions."""
    rules: dict[str, str] = {}
    previous = ""
    for line in lines:
        name, colon, rest = line.partition(":")
        if (
            colon
            and name
            and not line.startswith(("#", "\t", " "))
            and " " not in name
            and not rest.startswith("=")
            and previous != "# Not a target:"
        ):
            rules[name] = rest.strip()
        previous = line
    return rules


def test_every_task_target_is_phony() -> None:
    rules = _rules(_database())
    phony = set(rules.get(".PHONY", "").split())
    # Task targets name no file: no path separator and no dot (the venv stamp and the buf binary
    # are real files, and .PHONY itself is a special target).
    tasks = {name for name in rules if "/" not in name and "." not in name}
    assert {"install", "test", "lint", "bench", "bench-cpu", "bench-scale"} <= tasks
    assert sorted(tasks - phony) == []
    assert sorted(phony - tasks) == []
