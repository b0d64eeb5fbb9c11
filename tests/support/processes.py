"""Programs a test runs as an operator or a game server would: a separate process, awaited on the
test's event loop (not subprocess.run: the servers answering it run on this event loop)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

import orjson

from tests.support.stack import Stack


async def run_process(
    *argv: str, env: Mapping[str, str], timeout: float | None = None
) -> tuple[int, bytes, str]:
    """Run `argv` to its end (within `timeout` seconds when given); (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out, err.decode()


async def admin_cli(
    stack: Stack, command: str, *args: str, client: str = "admin-tool", secret: str | None = None
) -> tuple[int, Any, str]:
    """`scoreboard <command> <args>` as the admin service account (the stack's secret unless
    another is given), against the stack; (exit code, the JSON answer or None, stderr)."""
    target = "leaderboard" if command == "boards" else "score"
    env = {
        **os.environ,
        "SCOREBOARD_AUTH_ADDR": stack.address("auth"),
        f"SCOREBOARD_{target.upper()}_ADDR": stack.address(target),
        "SCOREBOARD_CLIENT_ID": client,
        "SCOREBOARD_CLIENT_SECRET": stack.admin_secret if secret is None else secret,
    }
    code, out, err = await run_process(sys.executable, "-m", "ops", command, *args, env=env)
    return code, orjson.loads(out) if out.strip() else None, err
