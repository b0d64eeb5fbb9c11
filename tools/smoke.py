"""Smoke test of the embedded path exactly as a new user runs it: `make run` with no database or
Redis configured, one action, one WebSocket update, the weekly board beside the all-time one (a
completion counts on both; `scoreboard boards close-period weekly` freezes exactly what the live
weekly board showed and empties it), Ctrl-C, and no process left behind; then a second `make run`
on the same data, which finds the weekly board as it was (nothing created twice).

Usage: python tools/smoke.py   (run from the repository root; exits non-zero on failure)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent
WEEKLY = "weekly"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _register(client: httpx.AsyncClient) -> tuple[str, str]:
    name = f"smoke{secrets.token_hex(4)}"
    reply = await client.post(
        "/api/auth/register", json={"username": name, "password": "smoke-test-password"}
    )
    reply.raise_for_status()
    data = reply.json()["data"]
    return data["accessToken"], data["user"]["userId"]


async def _exercise(base: str, env: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        token, user_id = await _register(client)
        ws_url = base.replace("http://", "ws://") + f"/ws?token={token}"
        async with websockets.connect(ws_url) as ws:
            ack = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "CONNECTION_ACK", ack
            reply = await client.post(
                "/api/actions/complete",
                json={"actionId": "daily-login"},
                headers={"authorization": f"Bearer {token}"},
            )
            assert reply.status_code == 200, reply.text
            deadline = time.monotonic() + 10
            while True:
                message = orjson.loads(
                    await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                )
                if message["type"] == "LEADERBOARD_UPDATE" and any(
                    e["userId"] == user_id for e in message["data"]["top10"]
                ):
                    break
        print("smoke: registered, completed an action, received the update")
        await _weekly(client, env, {user_id: 10})


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    reply = await client.get(path)
    assert reply.status_code == 200, (path, reply.status_code, reply.text)
    return reply.json()["data"]


async def _top10(client: httpx.AsyncClient, board: str | None, expected: dict[str, int]) -> Any:
    """The board's live top 10 once it shows exactly `expected` (user id -> score)."""
    path = "/api/leaderboard" + (f"?board={board}" if board else "")
    deadline = time.monotonic() + 10
    while True:
        top10 = (await _get(client, path))["top10"]
        if {e["userId"]: e["score"] for e in top10} == expected:
            return top10
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: expected {expected}, the board shows {top10}")
        await asyncio.sleep(0.2)


async def _weekly(client: httpx.AsyncClient, env: dict[str, str], scores: dict[str, int]) -> None:
    """Issue 17 under `make run`: the weekly board beside the all-time one, a completion
    counting on both, a close by hand freezing exactly what the live weekly board showed."""
    boards = {b["boardId"]: b for b in await _get(client, "/api/boards")}
    assert set(boards) == {"default", WEEKLY}, boards
    weekly = boards[WEEKLY]
    assert weekly["resetSchedule"] == "0 0 * * 1" and weekly["timeZone"] == "Europe/Berlin", weekly
    assert datetime.fromisoformat(weekly["nextResetAt"]) > datetime.now(UTC), weekly
    assert boards["default"]["nextResetAt"] is None, boards["default"]
    period = weekly["currentPeriod"]
    # A second player, with more points: one completion counts on both boards.
    token, user_id = await _register(client)
    reply = await client.post(
        "/api/actions/complete",
        json={"actionId": "win-match"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 200, reply.text
    scores = {**scores, user_id: 25}
    await _top10(client, None, scores)
    shown = await _top10(client, WEEKLY, scores)
    assert shown[0]["userId"] == user_id, shown
    print(f"smoke: one completion counts on the default and the {WEEKLY} board: {scores}")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        "boards",
        "--client-id",
        "dev-admin",
        "--client-secret-file",
        str(Path(env["SCOREBOARD_DATA_DIR"]) / "secrets" / "dev-admin-client-secret"),
        "close-period",
        WEEKLY,
        cwd=ROOT,
        env={
            **env,
            "SCOREBOARD_AUTH_ADDR": f"127.0.0.1:{env['SCOREBOARD_AUTH_PORT']}",
            "SCOREBOARD_LEADERBOARD_ADDR": f"127.0.0.1:{env['SCOREBOARD_LEADERBOARD_PORT']}",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, (process.returncode, out.decode(), err.decode())
    frozen = await _get(client, f"/api/boards/{WEEKLY}/periods/{period}/entries?pageSize=100")
    assert frozen["period"]["closed"] is True, frozen
    assert frozen["entries"] == shown, (frozen["entries"], shown)
    assert await _top10(client, WEEKLY, {}) == []
    after = await _get(client, f"/api/boards/{WEEKLY}")
    assert after["currentPeriod"] == period + 1 and after["lastClosedPeriod"] == period, after
    assert after["lastWinners"] == shown[:3], after
    await _top10(client, None, scores)  # the all-time board keeps them
    print(
        f"smoke: scoreboard boards close-period {WEEKLY} froze period {period} as the live board"
        f" showed it ({len(shown)} entries) and emptied the live {WEEKLY} board"
    )


async def _restarted(base: str) -> None:
    """A second `make run` on the same data: the weekly board as it was, nothing twice."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        boards = await _get(client, "/api/boards")
        assert sorted(b["boardId"] for b in boards) == ["default", WEEKLY], boards
        weekly = next(b for b in boards if b["boardId"] == WEEKLY)
        assert weekly["currentPeriod"] == 2 and weekly["lastClosedPeriod"] == 1, weekly
        actions = await _get(client, "/api/actions")
        assert actions, actions
    print(f"smoke: a second make run found the {WEEKLY} board as it was (period 2)")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sbsmoke-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
        env["SCOREBOARD_DATA_DIR"] = data_dir
        for name in ("AUTH", "SCORE", "LEADERBOARD", "STREAM", "EDGE"):
            env[f"SCOREBOARD_{name}_PORT"] = str(_free_port())
        base = f"http://127.0.0.1:{env['SCOREBOARD_EDGE_PORT']}"

        def first(banner: list[str]) -> None:
            assert any("boards:" in line and "created" in line for line in banner), banner
            asyncio.run(_exercise(base, env))

        def second(banner: list[str]) -> None:
            boards = [line for line in banner if "boards:" in line]
            assert boards and "created" not in boards[0], banner
            assert "now counting" not in boards[0], banner  # no action changed again
            asyncio.run(_restarted(base))

        for check in (first, second):
            code = _make_run(env, data_dir, check)
            if code:
                return code
    return 0


def _make_run(env: dict[str, str], data_dir: str, check: Callable[[list[str]], None]) -> int:
    """`make run` until its banner is out, `check(banner)`, Ctrl-C, nothing left behind."""
    runner = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    assert runner.stdout is not None
    seen: set[int] = set()
    banner: list[str] = []
    try:
        started = time.monotonic()
        for line in runner.stdout:
            print("make run:", line.rstrip())
            if "Scoreboard is running" in line or banner:
                banner.append(line.rstrip())
            if "Press Ctrl-C to stop" in line:
                break
            if time.monotonic() - started > 300:
                raise RuntimeError("the stack did not start in 5 minutes")
        else:
            raise RuntimeError(f"make run exited with {runner.wait()}")
        seen = {p.pid for p in psutil.Process(runner.pid).children(recursive=True)}
        seen |= {p.pid for p in _processes_using(data_dir)}
        check(banner)
    finally:
        os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            rest, _ = runner.communicate(timeout=60)
            print(rest.rstrip())
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            raise
    time.sleep(0.5)
    left = [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    left += [p.pid for p in _processes_using(data_dir)]
    if left:
        print(f"smoke: processes left behind: {sorted(set(left))}", file=sys.stderr)
        return 1
    if runner.returncode not in (0, -signal.SIGINT):
        print(f"smoke: make run exited with {runner.returncode}", file=sys.stderr)
        return 1
    print(f"smoke: stopped cleanly, {len(seen)} processes started and all gone")
    return 0


def _processes_using(folder: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(folder in part for part in cmdline):
            found.append(process)
    return found


if __name__ == "__main__":
    raise SystemExit(main())
